package bootstrap

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
)

// TagJournal marks a deployment's journal secret (not TagDeployment: the
// journal is no resource of the plan).
const TagJournal = "gosling-journal"

// AWSJournalSecret is the name of the Secrets Manager secret that keeps a
// deployment's journal.
func AWSJournalSecret(deployment string) string { return "gosling/" + deployment + "/deploy-journal" }

// smBlob keeps the journal as the binary value of a Secrets Manager secret;
// each write is a new version (AWSCURRENT), the one before stays as
// AWSPREVIOUS.
type smBlob struct {
	sm   *secretsmanager.Client
	name string
}

// NewAWSJournal keeps the deployment's journal in Secrets Manager
// (AWSJournalSecret), made on the first write.
func (p *AWSProvider) NewAWSJournal() Journal {
	return BlobJournal{smBlob{sm: p.sm, name: AWSJournalSecret(p.Deployment)}}
}

func (b smBlob) Where() string { return "aws-sm secret " + b.name }

func (b smBlob) Load(ctx context.Context) ([]byte, error) {
	out, err := b.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: &b.name})
	if apiCode(err) == "ResourceNotFoundException" {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the journal secret %s: %w", b.name, err)
	}
	return out.SecretBinary, nil
}

func (b smBlob) Save(ctx context.Context, doc []byte) error {
	_, err := b.sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: &b.name, SecretBinary: doc})
	if apiCode(err) != "ResourceNotFoundException" {
		return err
	}
	_, err = b.sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name: &b.name, SecretBinary: doc, Description: aws.String("gosling deploy journal: every change of each deploy, with its previous value"),
		Tags: []smtypes.Tag{{Key: aws.String(TagJournal), Value: aws.String(b.name)}},
	})
	return err
}
