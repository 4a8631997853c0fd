package pytorch

import "github.com/smeltml/smelt/convert"

// Registering makes convert.OpenWeights read pytorch_model.bin files in any
// program that links this package.
func init() { convert.RegisterOpener("pytorch", Open) }
