package manifest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"strings"
	"testing"
)

func TestKeysRoundTrip(t *testing.T) {
	for _, alg := range []string{Ed25519, P256} {
		t.Run(alg, func(t *testing.T) {
			k, err := GenerateKey(alg)
			if err != nil {
				t.Fatal(err)
			}
			privPEM, err := MarshalPrivateKeyPEM(k)
			if err != nil {
				t.Fatal(err)
			}
			k2, err := ParsePrivateKeyPEM(privPEM)
			if err != nil {
				t.Fatal(err)
			}
			pubPEM, _ := MarshalPublicKeyPEM(k.Public())
			jwk, _ := MarshalPublicKeyJWK(k.Public())
			for name, b := range map[string][]byte{"pem": pubPEM, "jwk": jwk} {
				pub, err := ParsePublicKey(b)
				if err != nil {
					t.Fatalf("ParsePublicKey(%s): %v", name, err)
				}
				if pub.KeyID() != k.Public().KeyID() || pub.Alg() != alg {
					t.Errorf("%s round trip changed the key", name)
				}
				msg := []byte(`{"format":1}`)
				sig, err := Sign(msg, k2)
				if err != nil {
					t.Fatal(err)
				}
				if err := VerifySignature(msg, sig, pub); err != nil {
					t.Errorf("signature by the re-parsed key does not verify with the %s public key: %v", name, err)
				}
			}
			if !bytes.Contains(privPEM, []byte("BEGIN PRIVATE KEY")) || !bytes.Contains(pubPEM, []byte("BEGIN PUBLIC KEY")) {
				t.Errorf("PEM block types: %s / %s", privPEM, pubPEM)
			}
		})
	}
	if _, err := GenerateKey("rsa"); err == nil {
		t.Error("GenerateKey(rsa) accepted")
	}
}

func TestKeyErrors(t *testing.T) {
	k, _ := GenerateKey(Ed25519)
	jwk, _ := MarshalPublicKeyJWK(k.Public())
	other, _ := GenerateKey(Ed25519)
	otherJWK, _ := MarshalPublicKeyJWK(other.Public())
	var j, o JWK
	json.Unmarshal(jwk, &j)
	json.Unmarshal(otherJWK, &o)
	j.Kid = o.Kid
	wrongKid, _ := json.Marshal(j)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der384, _ := x509.MarshalPKIXPublicKey(&p384.PublicKey)
	pem384 := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der384})
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"private in public", string(mustPEM(t, k)), `PUBLIC KEY`},
		{"garbage", "hello", "PEM block"},
		{"p384", string(pem384), "want P-256"},
		{"jwk with d", strings.Replace(string(jwk), `{`, `{"d":"AAAA",`, 1), `unknown field "d"`},
		{"jwk kid mismatch", string(wrongKid), "does not match the key"},
		{"jwk rsa", `{"kty":"RSA","crv":"","x":"AA"}`, "unsupported"},
		{"jwk short x", `{"kty":"OKP","crv":"Ed25519","x":"AAAA"}`, "32"},
		{"jwk off curve", `{"kty":"EC","crv":"P-256","x":"` + b64u(make([]byte, 32)) + `","y":"` + b64u(bytes.Repeat([]byte{1}, 32)) + `"}`, "point"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePublicKey([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParsePublicKey = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if _, err := ParsePrivateKeyPEM([]byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")); err == nil {
		t.Error("ParsePrivateKeyPEM accepted a public key block")
	}
}

func b64u(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func mustPEM(t *testing.T, k *PrivateKey) []byte {
	b, err := MarshalPrivateKeyPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestP256SignatureForm checks the envelope carries raw r||s (64 bytes)
// that verify with crypto/ecdsa independently, and that a DER signature
// is refused.
func TestP256SignatureForm(t *testing.T) {
	_, k := exampleKeys(t)
	msg := []byte(`{"format":1}`)
	sigFile, err := Sign(msg, k)
	if err != nil {
		t.Fatal(err)
	}
	var env Envelope
	json.Unmarshal(sigFile, &env)
	raw, _ := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
	if len(raw) != 64 {
		t.Fatalf("P-256 signature is %d bytes, want 64 (r||s)", len(raw))
	}
	digest := sha256.Sum256(PAE(PayloadType, msg))
	if !ecdsa.Verify(&k.ec.PublicKey, digest[:], bigInt(raw[:32]), bigInt(raw[32:])) {
		t.Error("r||s does not verify with crypto/ecdsa")
	}
	der, _ := ecdsa.SignASN1(rand.Reader, k.ec, digest[:])
	env.Signatures[0].Sig = base64.StdEncoding.EncodeToString(der)
	derFile, _ := json.Marshal(env)
	if err := VerifySignature(msg, derFile, k.Public()); err == nil {
		t.Error("a DER-encoded ECDSA signature verified")
	}
	again, _ := Sign(msg, k)
	if !bytes.Equal(again, sigFile) {
		t.Error("P-256 signing is not deterministic")
	}
}

// FuzzManifestDecode: Decode never panics, and whatever it accepts
// re-encodes to the same bytes.
func FuzzManifestDecode(f *testing.F) {
	b, err := os.ReadFile("testdata/example.manifest.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"format":1}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil {
			return
		}
		again, err := Encode(m)
		if err != nil {
			t.Fatalf("decoded manifest does not encode: %v", err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("Decode accepted bytes that re-encode differently")
		}
	})
}

// FuzzVerify: VerifySignature never panics and accepts only the exact
// bytes the fixed keys signed. The seeds sign a small payload (the
// example manifest is verified by TestExample): large seeds make the
// fuzzer spend its time minimizing.
func FuzzVerify(f *testing.F) {
	signed := []byte(`{"format":1,"id":"x"}`)
	ed, p := exampleKeys(f)
	for _, k := range []*PrivateKey{ed, p} {
		sig, err := Sign(signed, k)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(signed, sig)
	}
	f.Add(signed, []byte(`{}`))
	f.Fuzz(func(t *testing.T, manifestBytes, sigFile []byte) {
		for _, k := range []*PrivateKey{ed, p} {
			if err := VerifySignature(manifestBytes, sigFile, k.Public()); err == nil {
				if !bytes.Equal(manifestBytes, signed) {
					t.Fatalf("%s: verified a manifest the key never signed", k.Alg())
				}
				if _, _, err := DecodeEnvelope(sigFile); err != nil {
					t.Fatalf("verified an envelope DecodeEnvelope rejects: %v", err)
				}
			}
		}
	})
}

func bigInt(b []byte) *big.Int { return new(big.Int).SetBytes(b) }
