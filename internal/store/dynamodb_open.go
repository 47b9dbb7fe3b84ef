package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/yandexauth"
)

// DynamoOptions configure the DynamoDB engine (OpenDynamoDB).
type DynamoOptions struct {
	// TablePrefix names the engine's tables: <TablePrefix>-<kind>. This
	// build keeps everything in one table, <TablePrefix>-store. Letters,
	// digits, '_', '-' and '.', as DynamoDB allows in table names, at most
	// 200 of them.
	TablePrefix string
	// Region is the AWS region; empty takes the SDK's (AWS_REGION, the
	// shared config's profile), or YDBRegion for YDB.
	Region string
	// Endpoint overrides the service's URL (http(s)://host[:port][/path]),
	// for VPC endpoints, DynamoDB-compatible servers and test servers.
	Endpoint string
	// YDB, when set, talks to a Yandex YDB Document API endpoint (Endpoint,
	// required) instead of AWS.
	YDB *YDBOptions
	// TableWait bounds the wait for a table made on open to become active
	// (default 5 minutes).
	TableWait time.Duration
}

// YDBOptions say how to authenticate to the YDB Document API.
type YDBOptions struct {
	// Auth is YDBAuthIAM (default) or YDBAuthStatic.
	Auth string
	// IAM gives the credentials exchanged for IAM tokens when Auth is
	// YDBAuthIAM.
	IAM yandexauth.Options
}

// YDB Document API authentication modes, as Yandex documents them:
// requests carry "Authorization: Bearer <IAM token>" (Working with data
// through the HTTP interface, https://yandex.cloud/en/docs/ydb/docapi/tools/aws-http),
// or an AWS Signature V4 made with a static access key of a service
// account (Setting up AWS tools, https://yandex.cloud/en/docs/ydb/docapi/tools/aws-setup).
const (
	YDBAuthIAM    = "iam"
	YDBAuthStatic = "static"
)

// YDBRegion is the region a static key signs for.
const YDBRegion = "ru-central1"

// DefaultTablePrefix is the table prefix when a DSN names none.
const DefaultTablePrefix = "gosling"

// tableSuffix completes the one table's name.
const tableSuffix = "-store"

// CheckTablePrefix reports what is wrong with a table prefix, or nil; the
// rule is fly's, so a Nest that loads names a valid table.
func CheckTablePrefix(p string) error { return fly.ValidTablePrefix(p) }

// dynamoParams are the query parameters each DSN scheme accepts.
var dynamoParams = map[string][]string{
	"dynamodb": {"region", "endpoint"},
	"ydb":      {"table_prefix", "auth", "key_file", "insecure"},
}

// parseDynamoDSN reads a dynamodb:// or ydb:// DSN (see Open).
func parseDynamoDSN(dsn string, getenv func(string) string) (DynamoOptions, error) {
	scheme, rest, _ := strings.Cut(dsn, "://")
	authority, rawQuery, _ := strings.Cut(rest, "?")
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return DynamoOptions{}, fmt.Errorf("read the DSN's parameters: %w", err)
	}
	for k := range q {
		if !contains(dynamoParams[scheme], k) {
			return DynamoOptions{}, fmt.Errorf("unknown %s DSN parameter %q: use %s", scheme, k, strings.Join(dynamoParams[scheme], ", "))
		}
	}
	var o DynamoOptions
	switch scheme {
	case "dynamodb":
		o.TablePrefix = authority
		if o.TablePrefix == "" {
			o.TablePrefix = DefaultTablePrefix
		}
		o.Region = q.Get("region")
		if ep := q.Get("endpoint"); ep != "" {
			if err := checkEndpoint(ep); err != nil {
				return DynamoOptions{}, err
			}
			o.Endpoint = ep
		}
	case "ydb":
		host, path, _ := strings.Cut(authority, "/")
		if host == "" || strings.Trim(path, "/") == "" {
			return DynamoOptions{}, errors.New("a ydb DSN names the database's Document API endpoint: ydb://docapi.serverless.yandexcloud.net/ru-central1/<cloud ID>/<database ID>")
		}
		urlScheme := "https"
		switch q.Get("insecure") {
		case "", "false":
		case "true":
			urlScheme = "http"
		default:
			return DynamoOptions{}, fmt.Errorf("ydb DSN: insecure=%q: use true or false", q.Get("insecure"))
		}
		o.Endpoint = urlScheme + "://" + host + "/" + path
		o.Region = YDBRegion
		o.TablePrefix = q.Get("table_prefix")
		if o.TablePrefix == "" {
			o.TablePrefix = DefaultTablePrefix
		}
		y := &YDBOptions{Auth: q.Get("auth")}
		switch y.Auth {
		case "":
			y.Auth = YDBAuthIAM
		case YDBAuthIAM, YDBAuthStatic:
		default:
			return DynamoOptions{}, fmt.Errorf("ydb DSN: auth=%q: use iam (IAM tokens) or static (a service account's static access key through the AWS credential chain)", y.Auth)
		}
		y.IAM = yandexauth.FromEnv(getenv)
		if kf := q.Get("key_file"); kf != "" {
			y.IAM.KeyFile = kf
		}
		o.YDB = y
	}
	if err := CheckTablePrefix(o.TablePrefix); err != nil {
		return DynamoOptions{}, err
	}
	return o, nil
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func checkEndpoint(ep string) error {
	u, err := url.Parse(ep)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("endpoint %q is not an http:// or https:// URL", ep)
	}
	return nil
}

// dynamoPermissions is the least set of IAM actions the engine needs.
const dynamoPermissions = "dynamodb:DescribeTable, dynamodb:CreateTable (only while the table is missing), dynamodb:GetItem, dynamodb:PutItem, dynamodb:UpdateItem, dynamodb:DeleteItem, dynamodb:Query"

// OpenDynamoDB opens the store in a DynamoDB table (or a YDB Document API
// document table), creating the table when it is missing and waiting until
// it is active. Credentials come from the AWS SDK's default chain
// (environment, shared config and profiles, web identity, role_arn, ECS and
// EC2 instance roles), or for YDB with IAM authentication from o.YDB.IAM.
func OpenDynamoDB(ctx context.Context, o DynamoOptions) (Store, error) {
	engine := "dynamodb"
	if o.YDB != nil {
		engine = "ydb"
	}
	s, err := openDynamo(ctx, o, engine)
	if err != nil {
		return nil, fmt.Errorf("open %s store: %w", engine, err)
	}
	return validate(s), nil
}

func openDynamo(ctx context.Context, o DynamoOptions, engine string) (*dynamoStore, error) {
	if err := CheckTablePrefix(o.TablePrefix); err != nil {
		return nil, err
	}
	if o.Endpoint != "" {
		if err := checkEndpoint(o.Endpoint); err != nil {
			return nil, err
		}
	}
	s := &dynamoStore{table: o.TablePrefix + tableSuffix, engine: engine}
	if o.YDB != nil && o.Region == "" {
		o.Region = YDBRegion
	}
	var loadOpts []func(*config.LoadOptions) error
	if o.Region != "" {
		loadOpts = append(loadOpts, config.WithRegion(o.Region))
	}
	var tokens *yandexauth.TokenSource
	switch {
	case o.YDB == nil:
		s.hint = "the credentials need " + dynamoPermissions + " on table " + s.table
	case o.Endpoint == "":
		return nil, errors.New("the YDB Document API needs the database's endpoint (https://docapi.serverless.yandexcloud.net/ru-central1/<cloud ID>/<database ID>)")
	case o.YDB.Auth == YDBAuthStatic:
		s.hint = "the service account of the static key needs the ydb.editor role on the database"
	default:
		var err error
		if tokens, err = yandexauth.NewTokenSource(o.YDB.IAM); err != nil {
			return nil, err
		}
		s.closers = append(s.closers, func() error { return tokens.Close(context.Background()) })
		s.hint = "the service account needs the ydb.editor role on the database"
		// No AWS credentials: requests carry an IAM token instead.
		loadOpts = append(loadOpts, config.WithCredentialsProvider(aws.AnonymousCredentials{}))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("load the AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("no AWS region: add ?region=eu-central-1 (for example) to the DSN, or set AWS_REGION")
	}
	s.client = dynamodb.NewFromConfig(cfg, func(do *dynamodb.Options) {
		if o.Endpoint != "" {
			do.BaseEndpoint = aws.String(o.Endpoint)
		}
		if tokens != nil {
			do.Credentials = aws.AnonymousCredentials{}
			do.APIOptions = append(do.APIOptions, func(stack *middleware.Stack) error {
				return stack.Finalize.Add(bearerToken{tokens: tokens}, middleware.After)
			})
		}
	})
	s.endpoint = o.Endpoint
	if s.endpoint == "" {
		s.endpoint = "the " + cfg.Region + " endpoint"
	}
	wait := o.TableWait
	if wait <= 0 {
		wait = 5 * time.Minute
	}
	if err := s.ensureTable(ctx, wait); err != nil {
		_ = s.Close()
		return nil, err
	}
	if err := s.ensureSchema(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// bearerToken replaces request signing with a YDB IAM token; it runs
// after the (anonymous, so empty) signing step of every attempt.
type bearerToken struct{ tokens *yandexauth.TokenSource }

func (bearerToken) ID() string { return "YDBIAMToken" }

func (b bearerToken) HandleFinalize(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
	req, ok := in.Request.(*smithyhttp.Request)
	if !ok {
		return middleware.FinalizeOutput{}, middleware.Metadata{}, fmt.Errorf("ydb IAM token: unexpected request type %T", in.Request)
	}
	tok, err := b.tokens.Token(ctx)
	if err != nil {
		return middleware.FinalizeOutput{}, middleware.Metadata{}, fmt.Errorf("%w (set key_file= in the DSN or $%s to a service-account key, or $%s, or run where the metadata service gives a service account's token)",
			err, yandexauth.EnvKeyFile, yandexauth.EnvIAMToken)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return next.HandleFinalize(ctx, in)
}

// ensureTable creates the table when it is missing and waits for it to be
// active; a table of another shape is refused.
func (s *dynamoStore) ensureTable(ctx context.Context, wait time.Duration) error {
	out, err := s.client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &s.table})
	var missing *types.ResourceNotFoundException
	switch {
	case errors.As(err, &missing):
		_, err = s.client.CreateTable(ctx, &dynamodb.CreateTableInput{
			TableName: &s.table,
			AttributeDefinitions: []types.AttributeDefinition{
				{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS},
				{AttributeName: aws.String("sk"), AttributeType: types.ScalarAttributeTypeS},
			},
			KeySchema: []types.KeySchemaElement{
				{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash},
				{AttributeName: aws.String("sk"), KeyType: types.KeyTypeRange},
			},
			BillingMode: types.BillingModePayPerRequest,
		})
		var inUse *types.ResourceInUseException
		if err != nil && !errors.As(err, &inUse) { // in use: another process made it first
			return fmt.Errorf("create table %s: %w", s.table, s.apiErr(err))
		}
	case err != nil:
		return fmt.Errorf("describe table %s: %w", s.table, s.apiErr(err))
	default:
		if err := checkKeySchema(out.Table); err != nil {
			return fmt.Errorf("table %s: %w: choose another table prefix", s.table, err)
		}
		if out.Table.TableStatus == types.TableStatusActive {
			return nil
		}
	}
	waiter := dynamodb.NewTableExistsWaiter(s.client, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 200*time.Millisecond, 10*time.Second
	})
	if err := waiter.Wait(ctx, &dynamodb.DescribeTableInput{TableName: &s.table}, wait); err != nil {
		return fmt.Errorf("wait for table %s to become active: %w", s.table, s.apiErr(err))
	}
	return nil
}

func checkKeySchema(t *types.TableDescription) error {
	want := map[string]types.KeyType{"pk": types.KeyTypeHash, "sk": types.KeyTypeRange}
	if t == nil || len(t.KeySchema) != len(want) {
		return errors.New("it exists with another key schema (want pk, sk)")
	}
	for _, k := range t.KeySchema {
		if k.AttributeName == nil || want[*k.AttributeName] != k.KeyType {
			return errors.New("it exists with another key schema (want pk, sk)")
		}
	}
	for _, a := range t.AttributeDefinitions {
		if a.AttributeName != nil && want[*a.AttributeName] != "" && a.AttributeType != types.ScalarAttributeTypeS {
			return fmt.Errorf("its key %s is not a string", *a.AttributeName)
		}
	}
	return nil
}

// ensureSchema records the layout version in a new table and refuses a
// table written by a newer layout.
func (s *dynamoStore) ensureSchema(ctx context.Context) error {
	for {
		it, err := s.getItem(ctx, partMeta, skSchema)
		if err == nil {
			v := it.int("version")
			if it.err != nil {
				return fmt.Errorf("read the layout version of table %s: %w", s.table, it.err)
			}
			if v > dynamoSchemaVersion {
				return fmt.Errorf("table %s has layout version %d, newer than this build understands (%d): run a newer gosling", s.table, v, dynamoSchemaVersion)
			}
			return nil
		}
		if !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("read the layout version of table %s: %w", s.table, err)
		}
		e := &expr{}
		err = s.putItem(ctx, map[string]types.AttributeValue{
			"pk": avS(partMeta), "sk": avS(skSchema), "version": avN(dynamoSchemaVersion),
		}, e, e.notExists("pk"))
		if err == nil {
			return nil
		}
		if !isConditionFailed(err) { // raced with another process: read its record
			return fmt.Errorf("record the layout version of table %s: %w", s.table, err)
		}
	}
}

// Error codes that mean the caller may not do what it asked.
var deniedCodes = map[string]bool{
	"AccessDeniedException": true, "UnrecognizedClientException": true, "InvalidSignatureException": true,
	"MissingAuthenticationTokenException": true, "ExpiredTokenException": true, "IncompleteSignatureException": true,
	"InvalidClientTokenId": true, "SignatureDoesNotMatch": true,
}

// apiErr explains the service's errors that have one likely cause; others
// pass through. The original error stays wrapped.
func (s *dynamoStore) apiErr(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || isConditionFailed(err) {
		return err
	}
	var api smithy.APIError
	var resp *smithyhttp.ResponseError
	var send *smithyhttp.RequestSendError
	switch {
	case errors.As(err, &api) && deniedCodes[api.ErrorCode()],
		errors.As(err, &resp) && (resp.HTTPStatusCode() == 401 || resp.HTTPStatusCode() == 403):
		return fmt.Errorf("permission denied by %s (%s): %w", s.engine, s.hint, err)
	case errors.As(err, &api) && api.ErrorCode() == "ResourceNotFoundException":
		return fmt.Errorf("table %s does not exist (it is made when the store opens; was it deleted?): %w", s.table, err)
	case errors.As(err, &send):
		return fmt.Errorf("cannot reach %s at %s: %w", s.engine, s.endpoint, err)
	case strings.Contains(err.Error(), "failed to retrieve credentials"), strings.Contains(err.Error(), "failed to refresh cached credentials"):
		return fmt.Errorf("no AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, a role_arn profile or web identity, or run with an instance or task role): %w", err)
	}
	return err
}

// envGetenv reads the process environment.
func envGetenv(k string) string { return os.Getenv(k) }
