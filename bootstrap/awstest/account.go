package awstest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/acm"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/mototest"
)

// Account is an AWS account of its own on moto, reached through a proxy
// that serves what moto lacks (Serve), with what a deploy expects to find
// made beforehand: a VPC with two subnets.
type Account struct {
	*mototest.Proxy
	VPC     string
	Subnets []string
}

// New makes an Account for the test.
func New(t testing.TB) *Account {
	t.Helper()
	a := &Account{Proxy: mototest.NewProxy(t)}
	Serve(a.Proxy)
	ctx := context.Background()
	c := ec2.NewFromConfig(a.Direct())
	vpc, err := c.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.0.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	a.VPC = aws.ToString(vpc.Vpc.VpcId)
	for i, zone := range []string{"a", "b"} {
		sn, err := c.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: vpc.Vpc.VpcId, CidrBlock: aws.String(fmt.Sprintf("10.0.%d.0/24", i+1)),
			AvailabilityZone: aws.String(mototest.Region + zone)})
		if err != nil {
			t.Fatal(err)
		}
		a.Subnets = append(a.Subnets, aws.ToString(sn.Subnet.SubnetId))
	}
	return a
}

// Place puts the account's VPC and subnets in the Nest's AWS provider and,
// when its API gateway has a domain, a certificate for it in ACM.
func (a *Account) Place(t testing.TB, n *fly.Nest) {
	t.Helper()
	p := n.MotherGoose.Providers[fly.CloudAWS]
	p.VPCID, p.Subnets = a.VPC, a.Subnets
	n.MotherGoose.Providers[fly.CloudAWS] = p
	if gw := &n.MotherGoose.APIGateway; gw.Domain != "" {
		gw.CertificateARN = a.Certificate(t, gw.Domain)
	}
}

// Certificate imports a self-signed certificate for domain into ACM and
// returns its ARN.
func (a *Account) Certificate(t testing.TB, domain string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: domain}, DNSNames: []string{domain},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	out, err := acm.NewFromConfig(a.Direct()).ImportCertificate(context.Background(), &acm.ImportCertificateInput{
		Certificate: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		PrivateKey:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}),
	})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.CertificateArn)
}
