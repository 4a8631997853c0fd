package exec

import "fmt"

// Session is one sequence being generated with a KV cache: Prefill appends
// tokens in one pass, Decode appends one token. All buffers (cache, scratch
// for one token, logits) are allocated by NewSession, so steady-state
// Decode allocates nothing. A Session is not safe for concurrent use;
// several Sessions of one Model may run concurrently.
type Session struct {
	m      *Model
	cache  *KVCache
	one    *work     // scratch for Decode
	many   *work     // scratch for Prefill, grown on demand
	h      []float32 // [1, D] hidden state for Decode
	logits []float32 // [V] last logits
	pos    int
}

// NewSession returns a session for sequences of up to maxCtx tokens.
func (m *Model) NewSession(maxCtx int) (*Session, error) {
	if maxCtx <= 0 {
		return nil, fmt.Errorf("exec: session context %d, want > 0", maxCtx)
	}
	return &Session{
		m:      m,
		cache:  m.NewKVCache(maxCtx),
		one:    m.newWork(1, maxCtx),
		h:      make([]float32, m.Config.HiddenSize),
		logits: make([]float32, m.Config.VocabSize),
	}, nil
}

// Pos returns the number of tokens in the session so far.
func (s *Session) Pos() int { return s.pos }

// Cap returns the session's maximum number of tokens.
func (s *Session) Cap() int { return s.cache.Cap }

// Reset empties the session (the cache is reused).
func (s *Session) Reset() { s.pos = 0 }

// Prefill appends ids at positions Pos() .. Pos()+len(ids)-1 in one pass
// and returns the logits of the last one ([VocabSize]; the slice is reused
// by the next call).
func (s *Session) Prefill(ids []int) ([]float32, error) {
	m := s.m
	T := len(ids)
	if T == 0 {
		return nil, fmt.Errorf("exec: prefill of no tokens")
	}
	if s.pos+T > s.cache.Cap {
		return nil, fmt.Errorf("exec: %d tokens at position %d exceed the session context %d", T, s.pos, s.cache.Cap)
	}
	if T == 1 {
		return s.Decode(ids[0])
	}
	D := m.Config.HiddenSize
	h, err := m.Embed(ids)
	if err != nil {
		return nil, err
	}
	if s.many == nil || s.many.cap < T {
		s.many = m.newWork(T, s.cache.Cap)
	}
	w := s.many
	m.rope(w, s.pos, T)
	for i := range m.layers {
		m.block(i, h, T, s.pos, s.cache, w)
	}
	m.head(s.logits, w.x, h[(T-1)*D:], 1)
	s.pos += T
	return s.logits, nil
}

// Decode appends one token at position Pos() and returns its logits
// ([VocabSize]; the slice is reused by the next call). It allocates nothing.
func (s *Session) Decode(id int) ([]float32, error) {
	m := s.m
	if s.pos >= s.cache.Cap {
		return nil, fmt.Errorf("exec: session context %d is full", s.cache.Cap)
	}
	if err := m.embedRow(s.h, id, s.pos); err != nil {
		return nil, err
	}
	w := s.one
	m.rope(w, s.pos, 1)
	for i := range m.layers {
		m.block(i, s.h, 1, s.pos, s.cache, w)
	}
	m.head(s.logits, w.x, s.h, 1)
	s.pos++
	return s.logits, nil
}
