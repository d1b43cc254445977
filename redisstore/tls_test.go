package redisstore_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sessionkit/sessionkit/internal/redistest"
	"github.com/sessionkit/sessionkit/redisstore"
)

// TestTLS talks to a redis-server that serves TLS with a certificate from a
// test CA: with that CA trusted the store works; with the system roots, or
// for another host name, the handshake fails and the error says the
// configuration is wrong.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	caPool := writeCerts(t, dir)
	addr := startTLS(t, dir, "no")
	_, tlsPort, _ := net.SplitHostPort(addr)
	ctx := context.Background()

	s, err := redisstore.Open(redisstore.Config{Addr: addr, TLS: &tls.Config{RootCAs: caPool, ServerName: "localhost", MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Insert(ctx, "tls", []byte("rec"), time.Minute); err != nil {
		t.Fatalf("Insert over verified TLS: %v", err)
	}
	if b, ok, err := s.Load(ctx, "tls", time.Minute); err != nil || !ok || string(b) != "rec" {
		t.Fatalf("Load over verified TLS = %q, %v, %v", b, ok, err)
	}

	// Plain TCP to the TLS port: the server takes the first command for a
	// broken handshake and closes the connection.
	plain := redisstore.Config{Addr: addr}
	ps, err := redisstore.Open(plain)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	err = ps.Ping(ctx)
	if !errors.Is(err, redisstore.ErrUnavailable) || !strings.Contains(redisstore.Describe(err, plain), "TLS port (tls-port: use rediss:// or REDIS_TLS)") {
		t.Errorf("Ping without TLS to the TLS port = %v, Describe %q; want ErrUnavailable and the TLS port named", err, redisstore.Describe(err, plain))
	}

	rejected := map[string]redisstore.Config{
		"system roots": {Addr: addr, TLS: &tls.Config{ServerName: "localhost"}},
		"other host":   {Addr: addr, TLS: &tls.Config{RootCAs: caPool, ServerName: "redis.example.com"}},
	}
	// rediss:// verifies against the system roots too.
	fromURL, err := redisstore.ParseURL("rediss://localhost:" + tlsPort)
	if err != nil {
		t.Fatal(err)
	}
	rejected["rediss URL"] = fromURL
	for name, cfg := range rejected {
		t.Run(name, func(t *testing.T) {
			s, err := redisstore.Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			err = s.Ping(ctx)
			if !errors.Is(err, redisstore.ErrRefused) {
				t.Errorf("Ping = %v, want ErrRefused for a certificate that does not verify", err)
			}
		})
	}

	// A server that requires a client certificate the Store does not
	// send refuses the handshake with an alert: a refusal, as a wrong
	// password is, not an outage. Under TLS 1.2, in the handshake; under
	// TLS 1.3 the client's handshake ends first, and the alert, sent as
	// the server closes with the first command unread, can be lost to the
	// reset: Describe names the certificate for such a reset too.
	mtlsAddr := startTLS(t, dir, "yes")
	ms, err := redisstore.Open(redisstore.Config{Addr: mtlsAddr,
		TLS: &tls.Config{RootCAs: caPool, ServerName: "localhost", MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close()
	mcfg := redisstore.Config{Addr: mtlsAddr, TLS: &tls.Config{RootCAs: caPool, ServerName: "localhost"}}
	_, err = ms.Insert(ctx, "mtls", []byte("rec"), time.Minute)
	if !errors.Is(err, redisstore.ErrRefused) || !strings.Contains(redisstore.Describe(err, mcfg), "client certificate") {
		t.Errorf("Insert without the client certificate the server requires = %v, Describe %q; want ErrRefused, and the client certificate named", err, redisstore.Describe(err, mcfg))
	}
}

// startTLS starts a redis-server that serves TLS only, with the
// certificates writeCerts wrote into dir, requiring a client certificate
// or not (authClients "yes" or "no", its tls-auth-clients), and returns
// its address.
func startTLS(t *testing.T, dir, authClients string) string {
	t.Helper()
	port := closedPort(t)
	redistest.Start(t,
		"--tls-port", strconv.Itoa(port),
		"--tls-cert-file", filepath.Join(dir, "server.pem"),
		"--tls-key-file", filepath.Join(dir, "server-key.pem"),
		"--tls-ca-cert-file", filepath.Join(dir, "ca.pem"),
		"--tls-auth-clients", authClients)
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// writeCerts writes a CA and a server certificate for localhost and
// 127.0.0.1 (ca.pem, server.pem, server-key.pem) into dir and returns a pool
// that trusts the CA.
func writeCerts(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "sessionkit test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, block := range map[string]*pem.Block{
		"ca.pem":         {Type: "CERTIFICATE", Bytes: caDER},
		"server.pem":     {Type: "CERTIFICATE", Bytes: der},
		"server-key.pem": {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool
}
