// Package quantrun is the glue between the pure quantizer (package
// quantize), the reference executor (internal/exec), calibration data
// (internal/textdata) and the comparison statistics (internal/compare): the
// part of `smelt quantize` and `smelt validate` that does I/O and runs
// models, kept out of the cobra commands so that it can be tested directly.
//
// # Quantizing a graph
//
// Run executes a quantize.Plan over a graph and returns the graph to write:
//
//  1. Matrices the plan keeps in float are converted to quantize.KeepDType
//     (f16) first, and the executor used for calibration is loaded from
//     these converted weights, so calibration sees what ships.
//  2. When any entry's algorithm is gptq or awq, quantize.Calibrate runs
//     over the calibration sequences (true-sequential, block by block, each
//     block run once per sequence through exec.Model.RunStage; Hessians
//     accumulated with Gram, the executor's linear kernel; the adapter
//     times the forward passes, Calibrate the input statistics, and the
//     rest is the solves).
//  3. Every other quantized entry (embeddings or heads a rule quantizes, or
//     the whole plan for rtn) is quantized with RTN from its float weight
//     (as rewritten by AWQ's folding, if it was).
//  4. Float tensors that AWQ rewrote and that are not quantized (the
//     RMSNorm weights the scales fold into) are stored in f32, so the
//     folding is exact.
//  5. Each quantized weight becomes its packed tensors (Quantized.Tensors:
//     "<name>" u32, "<name>.scales", "<name>.zeros"), the table is sorted and
//     the graph's constants point at the new tensors.
//
// The result depends only on the graph, the plan, the sequences and the
// options: RTN and GPTQ do not depend on GOMAXPROCS, so quantizing twice
// gives the same bytes.
//
// # Calibration data
//
// LoadCalibration reads a calibration file with textdata (plain text,
// JSONL, or token ids), tokenizes it by textdata's protocol, cuts off the
// held-out tail (textdata.Split: the last fraction of the token stream),
// and draws the windows with textdata.Sample from the rest.
//
// # Comparing two models
//
// Compare runs a reference and a candidate model over the windows of the
// perplexity protocol (textdata.Windows) and feeds every scored position to
// a compare.Accumulator: the same targets as `smelt eval`, so the reported
// reference perplexity is the model's perplexity.
package quantrun
