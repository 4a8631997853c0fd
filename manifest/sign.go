package manifest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strconv"
)

// Signature algorithms.
const (
	Ed25519 = "ed25519" // Ed25519 (RFC 8032) over the PAE bytes; WebCrypto "Ed25519"
	P256    = "p256"    // ECDSA P-256 with SHA-256 over the PAE bytes, r||s (64 bytes); WebCrypto ECDSA/P-256/SHA-256
)

// PayloadType is the DSSE payloadType of a signed manifest.
const PayloadType = "application/vnd.smelt.manifest+json"

// MaxEnvelopeBytes bounds the size of manifest.sig: the base64 payload of
// a manifest of MaxManifestBytes plus 64 KiB for the rest.
const MaxEnvelopeBytes = MaxManifestBytes/3*4 + 4 + 64<<10

// maxSignatures bounds the signatures one envelope may carry.
const maxSignatures = 16

// PrivateKey is a signing key (Ed25519 or ECDSA P-256).
type PrivateKey struct {
	alg string
	ed  ed25519.PrivateKey
	ec  *ecdsa.PrivateKey
}

// PublicKey is a verification key (Ed25519 or ECDSA P-256).
type PublicKey struct {
	alg string
	ed  ed25519.PublicKey
	ec  *ecdsa.PublicKey
}

// GenerateKey makes a new key for alg (Ed25519 or P256) from crypto/rand.
func GenerateKey(alg string) (*PrivateKey, error) {
	switch alg {
	case Ed25519:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("manifest: %w", err)
		}
		return &PrivateKey{alg: Ed25519, ed: priv}, nil
	case P256:
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("manifest: %w", err)
		}
		return &PrivateKey{alg: P256, ec: priv}, nil
	}
	return nil, fmt.Errorf("manifest: unknown key algorithm %q (want %s or %s)", alg, Ed25519, P256)
}

// Alg returns the key's algorithm, Ed25519 or P256.
func (k *PrivateKey) Alg() string { return k.alg }

// Public returns the matching public key.
func (k *PrivateKey) Public() *PublicKey {
	if k.alg == Ed25519 {
		return &PublicKey{alg: Ed25519, ed: k.ed.Public().(ed25519.PublicKey)}
	}
	return &PublicKey{alg: P256, ec: &k.ec.PublicKey}
}

// Alg returns the key's algorithm, Ed25519 or P256.
func (k *PublicKey) Alg() string { return k.alg }

// KeyID is "sha256:" + hex of the SHA-256 of the key's PKIX (SubjectPublicKeyInfo) DER.
func (k *PublicKey) KeyID() string {
	der, err := x509.MarshalPKIXPublicKey(k.cryptoKey())
	if err != nil { // cannot happen for keys built by this package
		return ""
	}
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func (k *PublicKey) cryptoKey() crypto.PublicKey {
	if k.alg == Ed25519 {
		return k.ed
	}
	return k.ec
}

// MarshalPrivateKeyPEM encodes k as a PKCS#8 "PRIVATE KEY" PEM block.
func MarshalPrivateKeyPEM(k *PrivateKey) ([]byte, error) {
	var key any = k.ed
	if k.alg == P256 {
		key = k.ec
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePrivateKeyPEM decodes a PKCS#8 "PRIVATE KEY" PEM block holding an
// Ed25519 or ECDSA P-256 key.
func ParsePrivateKeyPEM(b []byte) (*PrivateKey, error) {
	blk, rest := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("manifest: private key: want one PEM block of type \"PRIVATE KEY\" (PKCS#8)")
	}
	key, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("manifest: private key: %w", err)
	}
	switch k := key.(type) {
	case ed25519.PrivateKey:
		return &PrivateKey{alg: Ed25519, ed: k}, nil
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("manifest: private key: ECDSA curve %s, want P-256", k.Curve.Params().Name)
		}
		return &PrivateKey{alg: P256, ec: k}, nil
	}
	return nil, fmt.Errorf("manifest: private key: unsupported key type %T (want Ed25519 or ECDSA P-256)", key)
}

// MarshalPublicKeyPEM encodes k as a PKIX "PUBLIC KEY" PEM block.
func MarshalPublicKeyPEM(k *PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(k.cryptoKey())
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublicKeyPEM decodes a PKIX "PUBLIC KEY" PEM block.
func ParsePublicKeyPEM(b []byte) (*PublicKey, error) {
	blk, rest := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("manifest: public key: want one PEM block of type \"PUBLIC KEY\" (PKIX)")
	}
	key, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("manifest: public key: %w", err)
	}
	switch k := key.(type) {
	case ed25519.PublicKey:
		return &PublicKey{alg: Ed25519, ed: k}, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("manifest: public key: ECDSA curve %s, want P-256", k.Curve.Params().Name)
		}
		return &PublicKey{alg: P256, ec: k}, nil
	}
	return nil, fmt.Errorf("manifest: public key: unsupported key type %T (want Ed25519 or ECDSA P-256)", key)
}

// JWK is a public JSON Web Key (RFC 7517/8037) as WebCrypto importKey("jwk")
// takes it: {"kty":"OKP","crv":"Ed25519","x":…} or
// {"kty":"EC","crv":"P-256","x":…,"y":…}, coordinates base64url without padding.
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y,omitempty"`
	Kid string `json:"kid,omitempty"` // KeyID
}

// MarshalPublicKeyJWK encodes k as a JWK (canonical JSON).
func MarshalPublicKeyJWK(k *PublicKey) ([]byte, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	j := JWK{Kid: k.KeyID()}
	if k.alg == Ed25519 {
		j.Kty, j.Crv, j.X = "OKP", "Ed25519", b64(k.ed)
	} else {
		pt, err := k.ec.Bytes() // 0x04 || X || Y
		if err != nil || len(pt) != 65 {
			return nil, fmt.Errorf("manifest: P-256 public key: %v", err)
		}
		j.Kty, j.Crv, j.X, j.Y = "EC", "P-256", b64(pt[1:33]), b64(pt[33:])
	}
	raw, err := json.Marshal(j)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return Canonicalize(raw)
}

// ParsePublicKeyJWK decodes a public JWK as written by MarshalPublicKeyJWK
// (extra members are rejected; private members "d" among them).
func ParsePublicKeyJWK(b []byte) (*PublicKey, error) {
	if len(b) > 4096 {
		return nil, errors.New("manifest: JWK: larger than 4096 bytes")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var j JWK
	if err := dec.Decode(&j); err != nil {
		return nil, fmt.Errorf("manifest: JWK: %w", err)
	}
	x, err := base64.RawURLEncoding.Strict().DecodeString(j.X)
	if err != nil {
		return nil, fmt.Errorf("manifest: JWK: x: %w", err)
	}
	var k *PublicKey
	switch {
	case j.Kty == "OKP" && j.Crv == "Ed25519" && j.Y == "":
		if len(x) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("manifest: JWK: Ed25519 x is %d bytes, want 32", len(x))
		}
		k = &PublicKey{alg: Ed25519, ed: ed25519.PublicKey(x)}
	case j.Kty == "EC" && j.Crv == "P-256":
		y, err := base64.RawURLEncoding.Strict().DecodeString(j.Y)
		if err != nil || len(x) != 32 || len(y) != 32 {
			return nil, errors.New("manifest: JWK: P-256 x and y must be 32 bytes each")
		}
		uncompressed := append(append([]byte{4}, x...), y...)
		ec, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), uncompressed) // checks the point is on the curve
		if err != nil {
			return nil, fmt.Errorf("manifest: JWK: P-256 point: %w", err)
		}
		k = &PublicKey{alg: P256, ec: ec}
	default:
		return nil, fmt.Errorf("manifest: JWK: kty %q crv %q unsupported (want OKP/Ed25519 or EC/P-256)", j.Kty, j.Crv)
	}
	if j.Kid != "" && j.Kid != k.KeyID() {
		return nil, fmt.Errorf("manifest: JWK: kid %q does not match the key (%s)", j.Kid, k.KeyID())
	}
	return k, nil
}

// ParsePublicKey accepts a public key as PKIX PEM or JWK.
func ParsePublicKey(b []byte) (*PublicKey, error) {
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '{' {
		return ParsePublicKeyJWK(t)
	}
	return ParsePublicKeyPEM(b)
}

// Envelope is a DSSE envelope (github.com/secure-systems-lab/dsse): the
// payload is the exact manifest.json bytes, and each signature is over
// PAE(PayloadType, payload).
type Envelope struct {
	Payload     string      `json:"payload"`     // standard base64 of the manifest bytes
	PayloadType string      `json:"payloadType"` // PayloadType
	Signatures  []Signature `json:"signatures"`
}

// Signature is one DSSE signature.
type Signature struct {
	KeyID string `json:"keyid"` // PublicKey.KeyID of the signer
	Sig   string `json:"sig"`   // standard base64 of the raw signature (Ed25519: 64 bytes; P-256: r||s, 64 bytes)
}

// PAE is DSSE's pre-authentication encoding:
// "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body, lengths in ASCII decimal.
func PAE(payloadType string, body []byte) []byte {
	var b bytes.Buffer
	b.WriteString("DSSEv1 ")
	b.WriteString(strconv.Itoa(len(payloadType)))
	b.WriteByte(' ')
	b.WriteString(payloadType)
	b.WriteByte(' ')
	b.WriteString(strconv.Itoa(len(body)))
	b.WriteByte(' ')
	b.Write(body)
	return b.Bytes()
}

// Sign returns the canonical JSON of a DSSE envelope signing manifest (the
// exact manifest.json bytes) with k. Both algorithms are deterministic
// (Ed25519 by construction, ECDSA per RFC 6979), so signing the same bytes
// with the same key gives the same envelope.
func Sign(manifestBytes []byte, k *PrivateKey) ([]byte, error) {
	msg := PAE(PayloadType, manifestBytes)
	var sig []byte
	switch k.alg {
	case Ed25519:
		sig = ed25519.Sign(k.ed, msg)
	case P256:
		digest := sha256.Sum256(msg)
		der, err := k.ec.Sign(nil, digest[:], crypto.SHA256) // nil rand: RFC 6979
		if err != nil {
			return nil, fmt.Errorf("manifest: sign: %w", err)
		}
		var rs struct{ R, S *big.Int }
		if _, err := asn1.Unmarshal(der, &rs); err != nil {
			return nil, fmt.Errorf("manifest: sign: %w", err)
		}
		sig = make([]byte, 64)
		rs.R.FillBytes(sig[:32])
		rs.S.FillBytes(sig[32:])
	default:
		return nil, fmt.Errorf("manifest: sign: unknown key algorithm %q", k.alg)
	}
	env := Envelope{
		Payload:     base64.StdEncoding.EncodeToString(manifestBytes),
		PayloadType: PayloadType,
		Signatures:  []Signature{{KeyID: k.Public().KeyID(), Sig: base64.StdEncoding.EncodeToString(sig)}},
	}
	raw, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return Canonicalize(raw)
}

// SignatureError reports a signature that does not verify, or a signature
// file that is malformed. Path names the file at fault (manifest.sig, or
// manifest.json when the signed payload differs from it).
type SignatureError struct {
	Path   string
	Reason string
}

func (e *SignatureError) Error() string {
	return fmt.Sprintf("verify: %s: %s", e.Path, e.Reason)
}

// DecodeEnvelope parses manifest.sig strictly: at most MaxEnvelopeBytes,
// canonical JSON, no unknown fields, the smelt payload type, 1 to 16
// signatures, canonical base64. It returns the envelope and the payload.
func DecodeEnvelope(b []byte) (*Envelope, []byte, error) {
	bad := func(format string, args ...any) (*Envelope, []byte, error) {
		return nil, nil, &SignatureError{Path: SignatureFile, Reason: fmt.Sprintf(format, args...)}
	}
	if len(b) > MaxEnvelopeBytes {
		return bad("%d bytes, too large", len(b))
	}
	c, err := Canonicalize(b)
	if err != nil {
		return bad("%v", err)
	}
	if !bytes.Equal(c, b) {
		return bad("not in canonical form")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var env Envelope
	if err := dec.Decode(&env); err != nil {
		return bad("%v", err)
	}
	if raw, err := json.Marshal(&env); err != nil || !bytes.Equal(raw, b) {
		return bad("not in canonical form (does not re-encode to the same bytes)")
	}
	if env.PayloadType != PayloadType {
		return bad("payloadType %q, want %q", env.PayloadType, PayloadType)
	}
	if n := len(env.Signatures); n == 0 || n > maxSignatures {
		return bad("%d signatures, want 1 to %d", n, maxSignatures)
	}
	payload, err := strictB64(env.Payload)
	if err != nil {
		return bad("payload: %v", err)
	}
	for i, s := range env.Signatures {
		if _, err := strictB64(s.Sig); err != nil {
			return bad("signature %d: %v", i, err)
		}
	}
	return &env, payload, nil
}

func strictB64(s string) ([]byte, error) {
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, err
	}
	if base64.StdEncoding.EncodeToString(b) != s {
		return nil, errors.New("non-canonical base64")
	}
	return b, nil
}

// VerifySignature checks that sigFile (a DSSE envelope) carries a valid
// signature by pub over exactly manifestBytes. A signature whose keyid is
// not pub's KeyID is not considered. Errors are *SignatureError.
func VerifySignature(manifestBytes, sigFile []byte, pub *PublicKey) error {
	env, payload, err := DecodeEnvelope(sigFile)
	if err != nil {
		return err
	}
	msg := PAE(env.PayloadType, payload)
	kid := pub.KeyID()
	ok := false
	for _, s := range env.Signatures {
		if s.KeyID != kid {
			continue
		}
		sig, _ := strictB64(s.Sig)
		if verifyRaw(pub, msg, sig) {
			ok = true
			break
		}
	}
	if !ok {
		return &SignatureError{Path: SignatureFile, Reason: fmt.Sprintf("no valid %s signature by key %s", pub.alg, kid)}
	}
	if !bytes.Equal(payload, manifestBytes) {
		return &SignatureError{Path: ManifestFile, Reason: "does not match the signed payload in " + SignatureFile}
	}
	return nil
}

func verifyRaw(pub *PublicKey, msg, sig []byte) bool {
	switch pub.alg {
	case Ed25519:
		return len(sig) == ed25519.SignatureSize && ed25519.Verify(pub.ed, msg, sig)
	case P256:
		if len(sig) != 64 {
			return false
		}
		digest := sha256.Sum256(msg)
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		return ecdsa.Verify(pub.ec, digest[:], r, s)
	}
	return false
}
