// Package pki is Rift's own certificate authority: an ECDSA P-256 CA kept
// in Rift's directory, the server certificate of Rift's listeners, and
// short-lived client certificates that identify one runner of one egg.
//
// A client certificate names its runner in the Subject's CommonName and its
// egg in the Subject's OrganizationalUnit, and is valid for client
// authentication only (RFC 5280 extended key usage id-kp-clientAuth).
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// caLifetime is how long a new CA is valid.
const caLifetime = 10 * 365 * 24 * time.Hour

// backdate covers clocks a little behind Rift's.
const backdate = 5 * time.Minute

// Files of the CA in its directory.
const (
	CAFile    = "ca.pem"
	CAKeyFile = "ca-key.pem"
)

// CA signs Rift's server and client certificates.
type CA struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  []byte
	now  func() time.Time
}

// LoadOrCreate reads the CA from dir (ca.pem and ca-key.pem), or makes a
// new one there, the key readable by the owner only. now is the clock
// certificates are dated by.
func LoadOrCreate(dir string, now func() time.Time) (*CA, error) {
	if now == nil {
		now = time.Now
	}
	certPath, keyPath := filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile)
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case certErr == nil && keyErr == nil:
		return parseCA(certPEM, keyPEM, now)
	case errors.Is(certErr, os.ErrNotExist) && errors.Is(keyErr, os.ErrNotExist):
	case certErr != nil && !errors.Is(certErr, os.ErrNotExist):
		return nil, fmt.Errorf("read Rift's CA: %w", certErr)
	case keyErr != nil && !errors.Is(keyErr, os.ErrNotExist):
		return nil, fmt.Errorf("read Rift's CA key: %w", keyErr)
	default:
		return nil, fmt.Errorf("the Rift CA in %s is half there (%s and %s go together): restore the missing file or remove both to make a new CA, which invalidates every issued certificate", dir, CAFile, CAKeyFile)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("make the CA directory: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	t := now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Gosling Rift CA", Organization: []string{"Gosling"}},
		NotBefore:             t.Add(-backdate),
		NotAfter:              t.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("sign Rift's CA: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return nil, err
	}
	return parseCA(certPEM, keyPEM, now)
}

func parseCA(certPEM, keyPEM []byte, now func() time.Time) (*CA, error) {
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, errors.New("the Rift CA files hold no PEM block")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse Rift's CA: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse Rift's CA key: %w", err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("the Rift CA key is a %T, not a signing key", k)
	}
	return &CA{cert: cert, key: signer, pem: certPEM, now: now}, nil
}

// CertPEM is the CA certificate in PEM, for clients to trust.
func (c *CA) CertPEM() []byte { return append([]byte(nil), c.pem...) }

// Pool is a pool holding only the CA certificate.
func (c *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.cert)
	return p
}

// ServerCertificate issues a server certificate for the given DNS names and
// IP addresses, valid for lifetime, with a fresh key.
func (c *CA) ServerCertificate(hosts []string, lifetime time.Duration) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	t := c.now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "Gosling Rift", Organization: []string{"Gosling"}},
		NotBefore:    t.Add(-backdate),
		NotAfter:     t.Add(lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), c.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("sign Rift's server certificate: %w", err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der, c.cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// Identity is who a client certificate speaks for.
type Identity struct {
	RunnerID string
	Egg      string
}

// IssueClient signs a client certificate for one runner of one egg over
// the public key of a PEM certificate signing request (PKCS #10), valid
// from now for lifetime. The CSR's own subject is ignored: Rift names the
// runner. It returns the certificate in PEM.
func (c *CA) IssueClient(csrPEM []byte, id Identity, lifetime time.Duration) ([]byte, error) {
	b, _ := pem.Decode(csrPEM)
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("no PEM \"CERTIFICATE REQUEST\" block: send a PKCS #10 CSR, such as `openssl req -new -key key.pem -subj /CN=runner`")
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse the CSR: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("the CSR's signature does not verify: %w", err)
	}
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey, ed25519.PublicKey:
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, errors.New("RSA keys below 2048 bits are refused: use ECDSA P-256 or RSA 2048+")
		}
	default:
		return nil, fmt.Errorf("a %T key is not supported: use ECDSA P-256, Ed25519 or RSA 2048+", k)
	}
	t := c.now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: id.RunnerID, OrganizationalUnit: []string{id.Egg}, Organization: []string{"Gosling runners"}},
		NotBefore:    t.Add(-backdate),
		NotAfter:     t.Add(lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, csr.PublicKey, c.key)
	if err != nil {
		return nil, fmt.Errorf("sign the client certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// ClientIdentity reads the runner and egg of a verified client certificate.
func ClientIdentity(cert *x509.Certificate) (Identity, error) {
	if cert == nil || cert.Subject.CommonName == "" || len(cert.Subject.OrganizationalUnit) != 1 {
		return Identity{}, errors.New("not a Rift client certificate: it names no runner and egg")
	}
	return Identity{RunnerID: cert.Subject.CommonName, Egg: cert.Subject.OrganizationalUnit[0]}, nil
}

// NewKeyAndCSR makes an ECDSA P-256 key and a CSR for it, both in PEM: what
// a runner sends to Rift (the key stays with the runner).
func NewKeyAndCSR(commonName string) (keyPEM, csrPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: commonName}}, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return n
}

// writeFileAtomic writes a file through a temporary file and a rename.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
