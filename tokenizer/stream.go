package tokenizer

import "strings"

// StreamDecoder turns ids into text one id at a time, for streaming
// generation. The concatenation of everything Next and Flush return equals
// Decode of all the ids.
//
// Protocol: the decoder keeps a window of ids whose first ids (the
// anchor) were already emitted, and the anchor's decoded text (the
// prefix). Next appends the new id and decodes the window; if the text is
// longer than the prefix and does not end in U+FFFD (an incomplete UTF-8
// sequence), it emits the part after the prefix, and the window shrinks to
// start at its last id that is not a byte-fallback token (<0xXX>): byte
// tokens decode as one run, so a window may not start inside a run.
// Decoding with the anchor in front keeps context-dependent rules right
// (the leading-space strip of the first token; bytes split over tokens).
type StreamDecoder struct {
	t      *Tokenizer
	window []int
	prefix string // Decode(window[:anchor])
}

// NewStreamDecoder starts a stream at the beginning of a text.
func (t *Tokenizer) NewStreamDecoder() *StreamDecoder { return &StreamDecoder{t: t} }

// Next adds id and returns the text that became complete, possibly "".
func (d *StreamDecoder) Next(id int) string {
	d.window = append(d.window, id)
	text := d.t.Decode(d.window)
	if len(text) <= len(d.prefix) || strings.HasSuffix(text, "\uFFFD") {
		return ""
	}
	out := text[len(d.prefix):]
	if !strings.HasPrefix(text, d.prefix) {
		// Not expected for the supported decoders; emit what differs.
		n := 0
		for n < len(text) && n < len(d.prefix) && text[n] == d.prefix[n] {
			n++
		}
		out = text[n:]
	}
	keep := len(d.window) - 1
	for keep > 0 && d.t.impl.isByteToken(d.window[keep]) {
		keep--
	}
	d.window = append(d.window[:0], d.window[keep:]...)
	d.prefix = d.t.Decode(d.window)
	return out
}

// Flush returns text held back at the end of the stream (byte tokens that
// never completed a UTF-8 sequence decode to U+FFFD) and resets the
// decoder for a new text.
func (d *StreamDecoder) Flush() string {
	text := d.t.Decode(d.window)
	out := ""
	if len(text) > len(d.prefix) && strings.HasPrefix(text, d.prefix) {
		out = text[len(d.prefix):]
	}
	d.window, d.prefix = nil, ""
	return out
}
