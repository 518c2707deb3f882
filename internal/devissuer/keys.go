package devissuer

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"os"
)

const rsaBits = 2048

type signingKey struct {
	kid  string
	priv *rsa.PrivateKey
}

func newSigningKey(priv *rsa.PrivateKey) *signingKey {
	return &signingKey{kid: thumbprint(&priv.PublicKey), priv: priv}
}

func generateKey() (*signingKey, error) {
	priv, err := rsa.GenerateKey(rand.Reader, rsaBits)
	if err != nil {
		return nil, fmt.Errorf("devissuer: generate RSA key: %w", err)
	}
	return newSigningKey(priv), nil
}

// loadOrCreateKey reads an RSA key from path; a missing file is created with a fresh key.
// An empty path gives a fresh key that is never written anywhere.
func loadOrCreateKey(path string) (*signingKey, error) {
	if path == "" {
		return generateKey()
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key, err := generateKey()
		if err != nil {
			return nil, err
		}
		block := &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key.priv)}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("devissuer: create key file: %w", err)
		}
		if err := pem.Encode(f, block); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("devissuer: write key file: %w", err)
		}
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("devissuer: write key file: %w", err)
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("devissuer: read key file: %w", err)
	}
	return parseKeyPEM(data)
}

func parseKeyPEM(data []byte) (*signingKey, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("devissuer: key file holds no RSA private key PEM block")
		}
		switch block.Type {
		case "RSA PRIVATE KEY":
			priv, err := x509.ParsePKCS1PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("devissuer: parse PKCS#1 key: %w", err)
			}
			return newSigningKey(priv), nil
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("devissuer: parse PKCS#8 key: %w", err)
			}
			priv, ok := k.(*rsa.PrivateKey)
			if !ok {
				return nil, errors.New("devissuer: key file holds a non-RSA key")
			}
			return newSigningKey(priv), nil
		}
	}
}

// thumbprint is the RFC 7638 JWK thumbprint, used as kid: the same key always has the
// same kid.
func thumbprint(pub *rsa.PublicKey) string {
	j := fmt.Sprintf(`{"e":%q,"kty":"RSA","n":%q}`, b64(big.NewInt(int64(pub.E)).Bytes()), b64(pub.N.Bytes()))
	sum := sha256.Sum256([]byte(j))
	return b64(sum[:])
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// JWK is one public key as published at /jwks.
type JWK struct {
	Kty string `json:"kty"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	N   string `json:"n"`
	E   string `json:"e"`
}

func (s *Server) jwks() []JWK {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]JWK, 0, len(s.keys))
	for _, k := range s.keys {
		pub := &k.priv.PublicKey
		out = append(out, JWK{
			Kty: "RSA", Use: "sig", Alg: "RS256", Kid: k.kid,
			N: b64(pub.N.Bytes()), E: b64(big.NewInt(int64(pub.E)).Bytes()),
		})
	}
	return out
}

// KeyID returns the kid of the current signing key. (Addition to the original sketch.)
func (s *Server) KeyID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[len(s.keys)-1].kid
}

// RotateSigningKey replaces the signing key with a fresh one and removes the old key from
// the JWKS at once: tokens signed with it fail at the protected resource ("unknown_kid").
// Refresh tokens are opaque and survive. It returns the new kid.
func (s *Server) RotateSigningKey() (newKid string) {
	key, err := generateKey()
	if err != nil {
		// crypto/rand failing is not recoverable in a test server.
		panic(err)
	}
	s.mu.Lock()
	old := s.keys[len(s.keys)-1].kid
	s.keys = []*signingKey{key}
	s.c.KeyRotations++
	s.mu.Unlock()
	s.log.Info("signing key rotated", "oldKid", old, "newKid", key.kid)
	return key.kid
}

func (s *Server) handleJWKS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-cache")
	writeJSON(w, http.StatusOK, map[string]any{"keys": s.jwks()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
