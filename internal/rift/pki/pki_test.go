package pki_test

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/rift/pki"
)

func TestCAPersistsAndIssuesRunnerCertificates(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ca, err := pki.LoadOrCreate(dir, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	again, err := pki.LoadOrCreate(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(again.CertPEM()) != string(ca.CertPEM()) {
		t.Error("a second start made a new CA")
	}
	if fi, _ := os.Stat(filepath.Join(dir, pki.CAKeyFile)); fi.Mode().Perm() != 0o600 {
		t.Errorf("CA key mode %v", fi.Mode().Perm())
	}

	keyPEM, csrPEM, err := pki.NewKeyAndCSR("claims-to-be-admin")
	if err != nil || len(keyPEM) == 0 {
		t.Fatal(err)
	}
	certPEM, err := ca.IssueClient(csrPEM, pki.Identity{RunnerID: "web-1", Egg: "web"}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	id, err := pki.ClientIdentity(cert)
	if err != nil || id != (pki.Identity{RunnerID: "web-1", Egg: "web"}) {
		t.Errorf("identity = %+v, %v (the CSR's subject must be ignored)", id, err)
	}
	if !cert.NotAfter.Equal(now.Add(24*time.Hour)) || len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("validity %s..%s, usages %v", cert.NotBefore, cert.NotAfter, cert.ExtKeyUsage)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), CurrentTime: now.Add(time.Hour), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("verify: %v", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), CurrentTime: now.Add(25 * time.Hour), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("the certificate verifies after its lifetime")
	}

	if _, err := ca.IssueClient([]byte("not a csr"), pki.Identity{RunnerID: "x", Egg: "y"}, time.Hour); err == nil || !strings.Contains(err.Error(), "CERTIFICATE REQUEST") {
		t.Errorf("garbage CSR: %v", err)
	}
	tampered := strings.Replace(string(csrPEM), "A", "B", 1)
	if _, err := ca.IssueClient([]byte(tampered), pki.Identity{RunnerID: "x", Egg: "y"}, time.Hour); err == nil {
		t.Error("a tampered CSR was signed")
	}

	os.Remove(filepath.Join(dir, pki.CAKeyFile))
	if _, err := pki.LoadOrCreate(dir, nil); err == nil || !strings.Contains(err.Error(), "half there") {
		t.Errorf("CA without its key: %v", err)
	}
}
