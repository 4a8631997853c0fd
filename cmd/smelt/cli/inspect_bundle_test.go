package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smeltml/smelt/manifest"
)

// TestInspectBundle builds a bundle and checks inspect's summary against
// the manifest: bytes per dtype and scheme add up to the stored tensors,
// shards and kernels are the manifest's, the provenance is shown, and the
// integrity and signature status follow signing and tampering.
func TestInspectBundle(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	if code, _, stderr := smelt(t, "build", buildFixture("rtn.recipe.yaml"), "--out", out, "--no-progress"); code != ExitOK {
		t.Fatalf("build exit %d: %s", code, stderr)
	}
	m, _, err := manifest.ReadManifest(out)
	if err != nil {
		t.Fatal(err)
	}
	inspect := func(args ...string) (*InspectBundleReport, string) {
		t.Helper()
		code, stdout, stderr := smelt(t, append([]string{"inspect", out, "--json"}, args...)...)
		if code != ExitOK {
			t.Fatalf("inspect exit %d: %s", code, stderr)
		}
		var rep InspectBundleReport
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
			t.Fatalf("inspect --json: %v\n%s", err, stdout)
		}
		code, human, stderr := smelt(t, append([]string{"inspect", out}, args...)...)
		if code != ExitOK {
			t.Fatalf("inspect exit %d: %s", code, stderr)
		}
		return &rep, human
	}

	rep, human := inspect()
	if rep.ID != m.ID || rep.Files != len(m.Files) || len(rep.Shards) != len(m.Shards) || len(rep.Kernels) != len(m.Kernels) || len(rep.Tensors) != len(m.Tensors) {
		t.Errorf("inspect: id %s, %d files, %d shards, %d kernels, %d tensors; manifest: %s, %d, %d, %d, %d",
			rep.ID, rep.Files, len(rep.Shards), len(rep.Kernels), len(rep.Tensors), m.ID, len(m.Files), len(m.Shards), len(m.Kernels), len(m.Tensors))
	}
	var stored, quantized int64
	for _, mt := range m.Tensors {
		stored += mt.NBytes
		if mt.Quant != nil && mt.Quant.Scheme == "int4-g32-asym" {
			quantized += mt.NBytes
		}
	}
	var dt, sc int64
	for _, n := range rep.Bytes.ByDType {
		dt += n
	}
	for _, n := range rep.Bytes.ByScheme {
		sc += n
	}
	if rep.Bytes.Total != stored || dt != stored || sc != stored {
		t.Errorf("bytes total %d, by dtype %d, by scheme %d; the tensors hold %d", rep.Bytes.Total, dt, sc, stored)
	}
	if got := rep.Bytes.ByScheme["int4-g32-asym"]; got <= quantized {
		t.Errorf("int4-g32-asym holds %d bytes, want the packed weights (%d) plus their scales and zeros", got, quantized)
	}
	if rep.Parameters != 260032 {
		t.Errorf("parameters %d, want stories260K's 260,032 (packed matrices count rows×cols)", rep.Parameters)
	}
	if rep.Integrity != "ok" || rep.Signature.Status != "unsigned" {
		t.Errorf("integrity %q, signature %+v; want ok and unsigned", rep.Integrity, rep.Signature)
	}
	if !cmp.Equal(rep.Provenance.Sources, m.Provenance.Sources) || rep.Provenance.Smelt != Version {
		t.Errorf("provenance %+v differs from the manifest's", rep.Provenance)
	}
	for _, want := range []string{"scheme int4-g32-asym:", "integrity ok", "signature:", "unsigned", "source model.safetensors:", "KERNEL", "blk.0.attn_q.weight"} {
		if !strings.Contains(human, want) {
			t.Errorf("human output lacks %q", want)
		}
	}
	if rep, _ := inspect("--tensors", `^blk\.1\.attn_q\.weight$`); len(rep.Tensors) != 1 || rep.Tensors[0].Quant == nil {
		t.Errorf("--tensors: %+v, want the one quantized tensor", rep.Tensors)
	}

	key := newKey(t)
	if code, _, stderr := smelt(t, "sign", out, "--key", key); code != ExitOK {
		t.Fatalf("sign: %s", stderr)
	}
	pub, _ := os.ReadFile(key + ".pub")
	pk, err := manifest.ParsePublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if rep, _ := inspect(); rep.Signature.Status != "present" || !cmp.Equal(rep.Signature.KeyIDs, []string{pk.KeyID()}) {
		t.Errorf("signed: signature %+v, want present by %s", rep.Signature, pk.KeyID())
	}
	shard := filepath.Join(out, filepath.FromSlash(m.Shards[0]))
	b, _ := os.ReadFile(shard)
	b[len(b)/2] ^= 1
	os.WriteFile(shard, b, 0o644)
	if rep, _ := inspect(); !strings.HasPrefix(rep.Integrity, "MISMATCH") || !strings.Contains(rep.Integrity, m.Shards[0]) {
		t.Errorf("tampered shard: integrity %q, want a mismatch naming %s", rep.Integrity, m.Shards[0])
	}
	// A manifest.json other than the signed one: the signature is stale.
	mp := filepath.Join(out, manifest.ManifestFile)
	mb, _ := os.ReadFile(mp)
	m2, err := manifest.Decode(mb)
	if err != nil {
		t.Fatal(err)
	}
	m2.Provenance.Smelt += "-edited"
	mb2, err := manifest.Encode(m2)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(mp, mb2, 0o644)
	if rep, _ := inspect(); rep.Signature.Status != "stale" {
		t.Errorf("edited manifest.json: signature %+v, want stale", rep.Signature)
	}
	if code, _, stderr := smelt(t, "inspect", out, "--digest"); code != ExitBadInput || !strings.Contains(stderr, "bundle") {
		t.Errorf("--digest on a bundle: exit %d %q, want 2", code, stderr)
	}
}
