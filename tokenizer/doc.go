// Package tokenizer turns text into token ids and back for the models smelt
// compiles: Hugging Face tokenizer.json files (BPE, byte-level or
// SentencePiece-style) and SentencePiece tokenizer.model files (BPE).
//
// # Loading
//
// Load(dir) prefers tokenizer.json and falls back to tokenizer.model;
// LoadJSON and LoadSentencePiece pick one. Unsupported tokenizers fail at
// load with an error naming the file and the type, e.g.
//
//	tokenizer: /m/tokenizer.json: unsupported model type "Unigram" (supported: BPE)
//	tokenizer: /m/tokenizer.model: unsupported sentencepiece model type UNIGRAM (supported: BPE)
//
// # tokenizer.json
//
// Encoding follows the Hugging Face tokenizers library:
//
//  1. Added tokens (added_tokens) with normalized=false are found in the raw
//     text, leftmost-longest, honouring single_word, lstrip and rstrip. A
//     special token written literally in the text IS that token: "C<s>"
//     encodes as "C" then BOS.
//  2. Each remaining piece is normalized on its own. Supported normalizers:
//     Sequence, Prepend (only to non-empty text), Replace (String or Regex
//     pattern), Strip, Lowercase. Added tokens with normalized=true are then
//     found in the normalized pieces.
//  3. Pre-tokenizers split pieces into words: ByteLevel (add_prefix_space,
//     the GPT-2 regex unless use_regex is false, bytes mapped to printable
//     runes as GPT-2's bytes_to_unicode), Split (String or Regex pattern;
//     Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous;
//     invert), Metaspace (replacement, prepend_scheme always/first/never or
//     the older add_prefix_space, split), Digits, WhitespaceSplit, Sequence.
//     Regexes run on github.com/dlclark/regexp2, which has the lookahead
//     that GPT-2 and Llama-3 patterns use (`\s+(?!\S)`); each match is
//     bounded by a 10 s timeout, reported as an Encode error.
//  4. The BPE model: ignore_merges looks the whole word up first; otherwise
//     one symbol per character, characters missing from the vocabulary
//     become <0xXX> byte tokens (byte_fallback) or the unk token
//     (consecutive ones fused with fuse_unk; dropped when there is no
//     unk_token, as in HF), then merges are applied lowest rank first,
//     leftmost among equal ranks, until none applies. Merges are read in
//     both the "a b" and the ["a", "b"] form. dropout,
//     continuing_subword_prefix and end_of_word_suffix are refused.
//  5. EncodeWithSpecial adds the post-processor's TemplateProcessing
//     single-sequence tokens (see "Special tokens").
//
// Decoding maps ids to token strings, leaves out special added tokens and
// runs the decoder chain: Sequence, Replace, ByteFallback (a run of byte
// tokens that is not valid UTF-8 gives one U+FFFD per token), Fuse, Strip,
// ByteLevel (invalid UTF-8 replaced per maximal subpart, as Rust's
// from_utf8_lossy), Metaspace.
//
// Kind is KindByteLevelBPE when the pre-tokenizer or decoder is ByteLevel,
// else KindSentencePieceBPE.
//
// # tokenizer.model
//
// SentencePiece BPE models are encoded by github.com/eliben/go-sentencepiece
// v0.7.0. That library refuses models with add_dummy_prefix or
// remove_extra_whitespaces, so the model bytes it is given have a
// normalizer_spec with both cleared, and this package applies them first,
// as sentencepiece does: remove_extra_whitespaces strips ASCII spaces at
// both ends and collapses each run of them to one; add_dummy_prefix puts a
// space in front of non-empty text. Only the identity normalization (no
// precompiled charsmap) with escaped whitespace is supported. Decoding
// follows sentencepiece's DecodeIds: control tokens give nothing, the unk
// token gives " ⁇ ", the first piece loses the dummy-prefix space.
//
// Runes that occur in no mergeable piece (for these models "\n", "\t" and
// other byte-fallback characters) can never merge, so the text between them
// is encoded call by call; the ids are the same as for one call. The
// tokenizer.json BPE does the same with byte-fallback and unk symbols when
// no merge involves them.
//
// # Special tokens
//
// BOS is, in order: bos_token_id of generation_config.json, then of
// config.json, then bos_token of tokenizer_config.json or
// special_tokens_map.json (looked up in the vocabulary), then a token named
// <s>, <|begin_of_text|> or <bos>; -1 if none. EOS likewise from
// eos_token_id (a number or a list: generation stops at any), eos_token,
// or </s>, <|end_of_text|>, <eos>, <|endoftext|>.
//
// EncodeWithSpecial adds: if tokenizer_config.json sets add_bos_token or
// add_eos_token (LlamaTokenizer style), BOS in front and/or EOS at the end
// as those say; otherwise the post-processor template of tokenizer.json;
// for tokenizer.model without those flags, BOS in front (the Llama
// convention). Decode leaves special tokens out; DecodeWithSpecial keeps
// them.
//
// # Known differences between the two files of one model
//
// Both test models ship both files; their ids agree except:
//
//   - Literal special-token text. Hugging Face turns "<s>", "</s>" or
//     "<unk>" written in the text into those tokens; sentencepiece keeps
//     them as characters. With Prepend("▁") the text after such a token is
//     normalized as a new piece and gets its own "▁" (HF's "legacy"
//     behaviour). ref29m's calibration text contains "C<s>" twice (Perl
//     POD); there tokenizer.json gives BOS plus a "▁" where tokenizer.model
//     gives "<", "s", ">". calib_ids.npy was made with sentencepiece, so
//     it equals the tokenizer.model ids; the tests check both, and that the
//     ids differ in exactly those two places.
//   - stories260K's tokenizer.model has remove_extra_whitespaces=true, its
//     tokenizer.json only collapses runs of spaces (Replace " {2,}" -> " "):
//     text with leading or trailing spaces tokenizes differently ("  Once"
//     gives "▁▁Once"-style pieces from tokenizer.json, "▁Once" from
//     tokenizer.model). Neither file round-trips runs of spaces.
//
// # Worked example
//
// ref29m, "And God said unto Moses," (prompt 1 of refs/ref29m/prompts.json):
//
//	normalize:        "▁And▁God▁said▁unto▁Moses,"  (Prepend ▁, Replace " " -> ▁)
//	BPE:              ▁And ▁God ▁said ▁unto ▁Moses ,
//	Encode:           690 1396 1197 908 3985 4024
//	EncodeWithSpecial: 1 690 1396 1197 908 3985 4024
//	Decode:           "And God said unto Moses,"  (Replace ▁ -> " ", Fuse, Strip one leading space)
//
// A GPT-2/Llama-3 style byte-level example is built in fixtures_test.go
// (byteLevelFixture): with the Llama-3 split regex "a  b" is split into
// "a", " ", " b" by the lookahead `\s+(?!\S)`, where a plain `\s+` would
// give "a", "  ", "b".
//
// # JavaScript
//
// codegen/runtime/tokenizer.js implements the same tokenizer.json subset
// for the browser runtime; TestJSTokenizer runs it under Node and checks
// that its ids, decoding and streaming equal this package's on both test
// models (prompts, every calibration paragraph, the whole texts) and the
// fixtures.
//
// # Streaming
//
// NewStreamDecoder returns a decoder for generation: Next(id) returns the
// text that id completes, holding back byte tokens until their UTF-8
// character is complete; the concatenation of all outputs equals Decode of
// all ids.
package tokenizer
