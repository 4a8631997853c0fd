// Package buildrun runs a whole smelt build from a recipe (package
// recipe): the part of `smelt build` that reads models, runs them and
// writes files, kept out of the cobra command so that it can be tested
// directly. It composes the other stages and decides nothing they decide:
//
//	source    convert.Load (a model folder or weight file) or bundle.Open
//	          (a bundle, verified); sha256 of every source file
//	prune     prunerun.Prune (prune.Run, with calibration statistics when
//	          the method ranks by activations)
//	quantize  quantrun.NewPlan (recipe rules, rules file, then the
//	          defaults) and quantrun.Run (RTN, GPTQ, AWQ)
//	codegen   codegen.Generate (kernels, program, runtime, tokenizer)
//	validate  quantrun.Compare of the source model and the built graph —
//	          the very tensors that will be written — over the recipe's
//	          validate.text, then compare.Gates
//	write     bundle.Write (signed when a key is given; published
//	          atomically)
//
// # Validation gates before publishing
//
// Validation runs before anything is written: when a gate fails, Run
// returns a *GateError and the output directory is left exactly as it was
// (absent, or holding the previous bundle). A build that gets past the
// gates publishes with bundle.Write, which writes everything (manifest.sig
// included) into a temporary directory beside the output and renames it
// into place, so a crash at any point leaves no partial bundle at the
// output path.
//
// Gates the recipe leaves out are not checked; a validate section with no
// gate still measures and reports.
//
// # Determinism
//
// The bundle depends only on the recipe, the files it names and the
// signing key: provenance holds the smelt version, the recipe as JSON, the
// sha256 of every source file by its path relative to the model folder,
// and the calibration file's digest by its path as written in the recipe —
// no timestamps, no absolute paths (unless the recipe itself spells one).
// Every stage is independent of GOMAXPROCS (quantrun, prune and
// bundle.Write document this), so building twice gives byte-identical
// bundles.
//
// # Provenance
//
// manifest.provenance.recipe is the JSON of the parsed recipe
// (recipe.Recipe's json tags: unset optional fields are omitted).
// provenance.calibration is the digest of quantize.calibration.text (or of
// prune.calibration.text when only pruning is calibrated); when both
// stages are calibrated from different files, the prune file's digest is
// listed among provenance.sources under the path "calibration:" + its
// recipe path.
package buildrun
