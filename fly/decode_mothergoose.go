package fly

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
)

var mothergooseSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "cloud", Required: true}, {Name: "region"}},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "temporal"}, {Type: "api_gateway"}, {Type: "containers"}, {Type: "queue"},
		{Type: "triggers"}, {Type: "database"}, {Type: "state"}, {Type: "secrets"}, {Type: "nest"}, {Type: "sweep"}, {Type: "agent"}, {Type: "cost"},
		{Type: "provider", LabelNames: []string{"cloud"}},
	},
}

var containerSchema = attrSchema("image", "cpu", "memory", "min_instances", "max_instances", "concurrency", "timeout")

// mgDecl keeps the source ranges that cross-file checks point at.
type mgDecl struct {
	mg        *MotherGoose
	def       hcl.Range
	providers map[string]hcl.Range
	// nestSecret is where nest.webhook_secret is set; nil when it is not.
	nestSecret *hcl.Range
}

// mgClouds are the clouds the servers themselves can run on.
var mgClouds = []string{CloudYandex, CloudAWS, CloudLocal}

// acmCertificateRE is an ACM certificate's ARN:
// arn:PARTITION:acm:REGION:ACCOUNT:certificate/ID
// (https://docs.aws.amazon.com/acm/latest/userguide/authen-overview.html#acm-resources-operations).
var acmCertificateRE = regexp.MustCompile(`^arn:aws(?:-cn|-us-gov)?:acm:([a-z]{2}(?:-[a-z]+)+-\d+):(\d{12}):certificate/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$`)

// decodeCertificate reads api_gateway.certificate_arn: the ACM
// certificate the AWS gateway's custom domain serves the domain with. A
// regional API Gateway domain name takes a certificate from ACM in its own
// region (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-custom-domain-names.html),
// so on AWS domain and certificate_arn come together and the certificate
// is in the deployment's region; other clouds take no ARN.
func decodeCertificate(ga *attrs, mg *MotherGoose, domain string) string {
	arn := ga.str("certificate_arn", "")
	if ga.has("certificate_arn") && mg.Cloud != CloudAWS {
		ga.errorf("certificate_arn", "Certificate ARN on another cloud",
			"certificate_arn names an AWS Certificate Manager certificate, which only the AWS API gateway's custom domain uses; cloud is %q: remove certificate_arn.", mg.Cloud)
		return ""
	}
	if mg.Cloud != CloudAWS {
		return ""
	}
	if arn != "" {
		m := acmCertificateRE.FindStringSubmatch(arn)
		switch {
		case m == nil:
			ga.errorf("certificate_arn", "Invalid certificate ARN",
				"%q is not an ACM certificate ARN: it looks like arn:aws:acm:%s:123456789012:certificate/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d (aws acm list-certificates --region %s lists them).", arn, mg.Region, mg.Region)
			return ""
		case m[1] != mg.Region:
			ga.errorf("certificate_arn", "Certificate in another region",
				"The gateway's domain is regional, so API Gateway takes a certificate from ACM in the deployment's region (%s), not %s: request or import one there (aws acm request-certificate --region %s --domain-name %s --validation-method DNS) and set certificate_arn to it.", mg.Region, m[1], mg.Region, domainOr(domain))
			return ""
		}
	}
	switch {
	case domain != "" && arn == "":
		*ga.diags = append(*ga.diags, &hcl.Diagnostic{
			Severity: hcl.DiagError, Summary: "Missing certificate for the API gateway's domain",
			Detail: fmt.Sprintf("On AWS the gateway serves %s through an API Gateway custom domain name, which needs a TLS certificate from AWS Certificate Manager in the deployment's region (%s): request one (aws acm request-certificate --region %s --domain-name %s --validation-method DNS) or import yours (aws acm import-certificate), then set certificate_arn = \"arn:aws:acm:%s:ACCOUNT:certificate/ID\".",
				domain, mg.Region, mg.Region, domain, mg.Region),
			Subject: ga.rng("domain"),
		})
	case ga.has("certificate_arn") && !ga.has("domain"):
		ga.errorf("certificate_arn", "Certificate without a domain",
			"certificate_arn is the certificate of the gateway's custom domain, and there is none: set domain = \"ci.example.com\" (the name the certificate is for), or remove certificate_arn.")
		return ""
	}
	return arn
}

// domainOr is domain, or a placeholder for a hint when there is none.
func domainOr(domain string) string {
	if domain == "" {
		return "ci.example.com"
	}
	return domain
}

func (l *loader) decodeMotherGooseBlock(b *hcl.Block) (*mgDecl, hcl.Diagnostics) {
	content, diags := blockContentOf(b, mothergooseSchema)
	a := newAttrs(l.ctx, content.Attributes, &diags)
	mg := &MotherGoose{Cloud: a.enum("cloud", CloudLocal, mgClouds...)}
	decl := &mgDecl{mg: mg, def: b.DefRange, providers: map[string]hcl.Range{}}
	defRegion := map[string]string{CloudYandex: "ru-central1", CloudAWS: "eu-central-1", CloudLocal: "local"}[mg.Cloud]
	mg.Region = a.str("region", defRegion)

	var providers []*hcl.Block
	var rest hcl.Blocks
	for _, blk := range content.Blocks {
		if blk.Type == "provider" {
			providers = append(providers, blk)
		} else {
			rest = append(rest, blk)
		}
	}
	blocks := singleBlocks(rest, &diags)
	sub := func(name string, schema *hcl.BodySchema) (*attrs, *hcl.Block) {
		body := &hcl.BodyContent{Attributes: hcl.Attributes{}}
		blk := blocks[name]
		if blk != nil {
			c, d := blk.Body.Content(schema)
			diags = append(diags, d...)
			body = c
		}
		return newAttrs(l.ctx, body.Attributes, &diags), blk
	}
	cloudOnly := func(blk *hcl.Block, what string) {
		if blk != nil && mg.Cloud == CloudLocal {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagWarning, Summary: fmt.Sprintf("%s ignored on the local cloud", what),
				Detail:  fmt.Sprintf("The %s block only applies when cloud is \"yandex\" or \"aws\".", blk.Type),
				Subject: blk.DefRange.Ptr(),
			})
		}
	}

	// Temporal.
	t, _ := sub("temporal", attrSchema("address", "namespace", "tls", "api_key"))
	mg.Temporal = Temporal{
		Address:   t.str("address", "localhost:7233"),
		Namespace: t.str("namespace", "default"),
		TLS:       t.boolean("tls", false),
		APIKey:    l.secret(t, "api_key"),
	}
	if !mg.Temporal.APIKey.IsZero() && !mg.Temporal.TLS && t.has("tls") {
		t.errorf("tls", "API key without TLS", "Temporal API keys are only sent over TLS: set tls = true.")
	}

	// API gateway and its auth function.
	gwBlock := blocks["api_gateway"]
	gw := APIGateway{Name: "gosling", Auth: AuthFunction{Name: "gosling-auth", CacheTTL: Duration(5 * time.Minute)}}
	if gwBlock != nil {
		c, d := gwBlock.Body.Content(&hcl.BodySchema{
			Attributes: []hcl.AttributeSchema{{Name: "name"}, {Name: "domain"}, {Name: "certificate_arn"}},
			Blocks:     []hcl.BlockHeaderSchema{{Type: "auth"}},
		})
		diags = append(diags, d...)
		// On the local cloud there is no gateway to make, but auth.tokens
		// still guard the REST API of gosling server.
		if mg.Cloud == CloudLocal && (c.Attributes["name"] != nil || c.Attributes["domain"] != nil) {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagWarning, Summary: "API gateway ignored on the local cloud",
				Detail:  "name and domain only apply when cloud is \"yandex\" or \"aws\"; auth.tokens still guard the REST API.",
				Subject: gwBlock.DefRange.Ptr(),
			})
		}
		ga := newAttrs(l.ctx, c.Attributes, &diags)
		gw.Name = ga.name("name", gw.Name)
		gw.Domain = ga.host("domain", "")
		gw.CertificateARN = decodeCertificate(ga, mg, gw.Domain)
		for _, ab := range singleBlocks(c.Blocks, &diags) {
			ac, d := ab.Body.Content(attrSchema("name", "tokens", "cache_ttl"))
			diags = append(diags, d...)
			aa := newAttrs(l.ctx, ac.Attributes, &diags)
			gw.Auth.Name = aa.name("name", gw.Auth.Name)
			gw.Auth.CacheTTL = aa.duration("cache_ttl", gw.Auth.CacheTTL, 0, Duration(time.Hour))
			for _, s := range aa.strings("tokens") {
				if ref, ok := aa.checkSecret("tokens", s); ok {
					gw.Auth.Tokens = append(gw.Auth.Tokens, ref)
					l.secretUses = append(l.secretUses, secretUse{ref: ref, rng: *aa.rng("tokens")})
				}
			}
		}
	}
	mg.APIGateway = gw

	// Serverless containers for the API and the two workers.
	ctBlock := blocks["containers"]
	cloudOnly(ctBlock, "Containers")
	mg.Containers = Containers{
		API:     defaultContainer(1, 512*MiB, 1, 10, 16),
		Worker:  defaultContainer(1, 1*GiB, 1, 5, 4),
		UglyFox: defaultContainer(0.5, 512*MiB, 1, 1, 1),
	}
	if ctBlock != nil {
		c, d := ctBlock.Body.Content(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
			{Type: "api"}, {Type: "mothergoose_worker"}, {Type: "uglyfox_worker"},
		}})
		diags = append(diags, d...)
		cb := singleBlocks(c.Blocks, &diags)
		mg.Containers.API = l.decodeContainer(cb["api"], mg.Containers.API, &diags)
		mg.Containers.Worker = l.decodeContainer(cb["mothergoose_worker"], mg.Containers.Worker, &diags)
		mg.Containers.UglyFox = l.decodeContainer(cb["uglyfox_worker"], mg.Containers.UglyFox, &diags)
	}

	// obsolete warns of a block a cloud deploy no longer acts on (the
	// local cloud's own warning already says it is ignored there).
	obsolete := func(blk *hcl.Block, summary, detail string) {
		if blk != nil && mg.Cloud != CloudLocal {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: summary, Detail: detail, Subject: blk.DefRange.Ptr()})
		}
	}

	// Queue and triggers: what the Celery-era design woke its workers
	// with. Gosling's Temporal task queues and Schedules do that work, so
	// deploy makes neither; old Nests still load, with a warning that says
	// what to do. A kind must still belong to the chosen cloud.
	q, qb := sub("queue", attrSchema("kind", "name", "visibility_timeout", "dead_letter_after"))
	cloudOnly(qb, "Queue")
	mg.Queue = Queue{
		Kind:              q.enum("kind", "none", "ymq", "sqs", "none"),
		Name:              q.name("name", "gosling-events"),
		VisibilityTimeout: q.duration("visibility_timeout", Duration(5*time.Minute), Duration(time.Second), Duration(12*time.Hour)),
		DeadLetterAfter:   q.integer("dead_letter_after", 5, 1, 1000),
	}
	l.checkCloudMatch(q, "kind", mg.Cloud, mg.Queue.Kind, map[string]string{"ymq": CloudYandex, "sqs": CloudAWS}, &diags)
	obsolete(qb, "No queue is made",
		"gosling deploy makes no message queue: webhooks the API accepts while Temporal is unreachable wait in the store's outbox, "+
			"which the API and the mothergoose workers deliver to Temporal. Remove the queue block; the next deploy deletes the queue an earlier one made.")

	tr, tb := sub("triggers", attrSchema("kind"))
	cloudOnly(tb, "Triggers")
	mg.Triggers = Triggers{Kind: tr.enum("kind", "none", "timer", "eventbridge", "none")}
	l.checkCloudMatch(tr, "kind", mg.Cloud, mg.Triggers.Kind, map[string]string{"timer": CloudYandex, "eventbridge": CloudAWS}, &diags)
	obsolete(tb, "Triggers are Temporal Schedules",
		"gosling deploy makes no timer trigger or EventBridge schedule: UglyFox runs on a Temporal Schedule (UF/config.fly's schedule) and each job on its own (its schedule in Jobs/), "+
			"made when MotherGoose applies the Nest. Remove the triggers block; the next deploy deletes the triggers an earlier one made.")

	// Database.
	db, dbb := sub("database", databaseSchema)
	mg.Database = l.decodeDatabase(db, dbb, b.DefRange, mg, &diags)

	// The runners' OpenTofu state.
	st, stb := sub("state", attrSchema("backend", "bucket", "prefix", "region", "endpoint", "path_style", "access_key", "secret_key"))
	mg.State = l.decodeState(st, stb, b.DefRange, mg, &diags)

	// Secret backends.
	mg.Secrets = l.decodeSecrets(blocks["secrets"], mg.Cloud, &diags)

	// Runner providers.
	mg.Providers = map[string]Provider{}
	for _, pb := range providers {
		name := pb.Labels[0]
		if prev, dup := decl.providers[name]; dup {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError, Summary: "Duplicate provider",
				Detail:  fmt.Sprintf("Provider %q was already configured at %s.", name, at(prev)),
				Subject: pb.DefRange.Ptr(),
			})
			continue
		}
		p, ok := l.decodeProvider(pb, &diags)
		if ok {
			decl.providers[name] = pb.DefRange
			mg.Providers[name] = p
		}
	}
	if len(providers) == 0 {
		mg.Providers[mg.Cloud] = Provider{Name: mg.Cloud}
	}
	// On AWS the API gateway reaches the API service through a VPC link.
	if gwBlock != nil && mg.Cloud == CloudAWS && mg.Providers[CloudAWS].VPCID == "" {
		subject, where := gwBlock.DefRange, "add a provider \"aws\" block with"
		if rng, ok := decl.providers[CloudAWS]; ok {
			subject, where = rng, "add to this block"
		}
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError, Summary: "Missing VPC for the API gateway",
			Detail:  fmt.Sprintf("On AWS the api_gateway is an HTTP API that reaches the API service privately, through a VPC link and a Cloud Map namespace in the service's VPC: %s vpc_id = \"vpc-...\" and subnets = [\"subnet-...\"] (the VPC and subnets the API service runs in).", where),
			Subject: subject.Ptr(),
		})
	}

	// The Nest repository itself.
	n, _ := sub("nest", attrSchema("project", "ref", "host", "token", "webhook_secret"))
	mg.Nest = NestSource{Project: n.str("project", ""), Ref: n.str("ref", "main"), Host: n.str("host", ""), Token: l.secret(n, "token"),
		WebhookSecret: l.secret(n, "webhook_secret")}
	decl.nestSecret = n.rng("webhook_secret")
	if mg.Nest.Project != "" {
		if err := validProjectPath(mg.Nest.Project); err != nil {
			n.errorf("project", "Invalid project path", "%v.", err)
		}
		if mg.Nest.WebhookSecret.IsZero() {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagWarning, Summary: "Pushes to the Nest are not applied",
				Detail: "The nest block names a project but no webhook_secret: MotherGoose refuses its push hooks, and servers follow the head of ref every --nest-sync instead. " +
					"Set webhook_secret = \"<secret URI>\", a secret of the Nest repository's own (never an egg's webhook secret), and gosling deploy gives the Nest's hook that token.",
				Subject: n.rng("project"),
			})
		}
	}
	sw, _ := sub("sweep", attrSchema("enabled", "interval", "webhook_url", "resend_failed", "pending_jobs"))
	mg.Sweep = decodeSweep(sw, mg.APIGateway)

	// How runner machines get the agent.
	ag, _ := sub("agent", attrSchema("url", "image", "version", "gitlab_runner_version", "gitlab_runner_url"))
	mg.Agent = decodeAgentRelease(ag)

	// The price table jobs are charged by.
	mg.Cost = l.decodeCost(blocks["cost"], &diags)
	return decl, diags
}

var (
	releaseVersionRE = regexp.MustCompile(`^v?[0-9][0-9A-Za-z.+~_-]*$`)
	imageRefRE       = regexp.MustCompile(`^[a-z0-9][a-z0-9._/:@-]*[a-zA-Z0-9._-]$`)
	placeholderRE    = regexp.MustCompile(`\{[^}]*\}`)
)

func decodeAgentRelease(a *attrs) AgentRelease {
	r := AgentRelease{
		URL: a.str("url", ""), Image: a.str("image", ""), Version: a.str("version", ""),
		GitLabRunnerVersion: a.str("gitlab_runner_version", ""), GitLabRunnerURL: a.str("gitlab_runner_url", ""),
	}
	for _, f := range []struct{ attr, value, version string }{
		{"url", r.URL, r.Version}, {"gitlab_runner_url", r.GitLabRunnerURL, r.GitLabRunnerVersion},
	} {
		if f.value == "" {
			continue
		}
		if err := releaseURL(f.value); err != nil {
			a.errorf(f.attr, "Invalid release URL", "%v.", err)
			continue
		}
		if strings.Contains(f.value, "{version}") && f.version == "" {
			which := "version"
			if f.attr == "gitlab_runner_url" {
				which = "gitlab_runner_version"
			}
			a.errorf(f.attr, "Version not pinned", "The URL names {version} but %s is not set: pin a version, such as %s = \"1.4.0\".", which, which)
		}
	}
	for _, f := range []struct{ attr, value string }{{"version", r.Version}, {"gitlab_runner_version", r.GitLabRunnerVersion}} {
		if f.value != "" && !releaseVersionRE.MatchString(f.value) {
			a.errorf(f.attr, "Invalid version", "%q is not a release version: use digits and dots, such as \"18.6.0\".", f.value)
		}
	}
	if r.Image != "" && !imageRefRE.MatchString(r.Image) {
		a.errorf("image", "Invalid image", "%q is not an image reference: use registry/repository:tag, such as \"cr.yandex/crp0123/gosling-runner:1.4.0\".", r.Image)
	}
	if (r.GitLabRunnerVersion == "") != (r.GitLabRunnerURL == "") {
		missing, present := "gitlab_runner_url", "gitlab_runner_version"
		if r.GitLabRunnerVersion == "" {
			missing, present = present, missing
		}
		if a.has(present) {
			a.errorf(present, "Incomplete gitlab-runner pin", "gitlab_runner_version and gitlab_runner_url go together: set %s too.", missing)
		}
	}
	return r
}

// releaseURL checks a download URL: https (http only for this machine),
// with no placeholder other than {version}, {os} and {arch}.
func releaseURL(s string) error {
	u, err := url.Parse(placeholderRE.ReplaceAllString(s, "x"))
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", s)
	}
	local := u.Hostname() == "localhost" || u.Hostname() == "127.0.0.1" || u.Hostname() == "::1"
	if u.Scheme != "https" && !(u.Scheme == "http" && local) {
		return fmt.Errorf("%q: machines download binaries over https only (http is allowed for localhost)", s)
	}
	for _, p := range placeholderRE.FindAllString(s, -1) {
		if p != "{version}" && p != "{os}" && p != "{arch}" {
			return fmt.Errorf("%q: unknown placeholder %s; use {version}, {os} or {arch}", s, p)
		}
	}
	return nil
}

func defaultContainer(cpu float64, mem Size, minI, maxI, conc int) Container {
	return Container{Image: "", CPU: cpu, Memory: mem, MinInstances: minI, MaxInstances: maxI, Concurrency: conc, Timeout: Duration(10 * time.Minute)}
}

func (l *loader) decodeContainer(b *hcl.Block, def Container, diags *hcl.Diagnostics) Container {
	if b == nil {
		return def
	}
	c, d := b.Body.Content(containerSchema)
	*diags = append(*diags, d...)
	a := newAttrs(l.ctx, c.Attributes, diags)
	out := Container{
		Image:        a.str("image", def.Image),
		CPU:          a.number("cpu", def.CPU, 0.1, 8),
		Memory:       a.size("memory", def.Memory, 128*MiB, 32*GiB),
		MinInstances: a.integer("min_instances", def.MinInstances, 0, 100),
		MaxInstances: a.integer("max_instances", def.MaxInstances, 1, 1000),
		Concurrency:  a.integer("concurrency", def.Concurrency, 1, 256),
		Timeout:      a.duration("timeout", def.Timeout, Duration(time.Second), Duration(time.Hour)),
	}
	if out.MinInstances > out.MaxInstances {
		a.errorf("min_instances", "Minimum above maximum", "min_instances (%d) is greater than max_instances (%d).", out.MinInstances, out.MaxInstances)
	}
	return out
}

// checkCloudMatch rejects a service of the other cloud, such as SQS on Yandex.
func (l *loader) checkCloudMatch(a *attrs, attr, cloud, value string, owner map[string]string, diags *hcl.Diagnostics) {
	o, ok := owner[value]
	if !ok || o == cloud || !a.has(attr) {
		return
	}
	var same []string
	for v, c := range owner {
		if c == cloud {
			same = append(same, v)
		}
	}
	hint := ""
	if len(same) == 1 {
		hint = fmt.Sprintf(" On %s use %q.", cloud, same[0])
	}
	a.errorf(attr, "Service of another cloud", "%q is a %s service but MotherGoose runs on %s.%s", value, o, cloud, hint)
}

var secretBackendBlocks = map[string]string{
	"lockbox": SchemeLockbox, "aws_sm": SchemeAWSSM, "vault": SchemeVault, "local": SchemeLocal,
}

func (l *loader) decodeSecrets(b *hcl.Block, cloud string, diags *hcl.Diagnostics) Secrets {
	s := Secrets{CacheTTL: Duration(5 * time.Minute), Backends: map[string]SecretBackend{}}
	if b == nil {
		if cloud == CloudLocal {
			s.Backend = SchemeLocal
			s.Backends[SchemeLocal] = SecretBackend{Scheme: SchemeLocal, CacheTTL: s.CacheTTL, Path: l.nestPath(".gosling/secrets")}
		}
		return s
	}
	l.secretsBlock = b.DefRange.Ptr()
	c, d := b.Body.Content(&hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "backend"}, {Name: "cache_ttl"}},
		Blocks:     []hcl.BlockHeaderSchema{{Type: "lockbox"}, {Type: "aws_sm"}, {Type: "vault"}, {Type: "local"}},
	})
	*diags = append(*diags, d...)
	a := newAttrs(l.ctx, c.Attributes, diags)
	s.CacheTTL = a.duration("cache_ttl", s.CacheTTL, 0, Duration(24*time.Hour))
	for typ, blk := range singleBlocks(c.Blocks, diags) {
		scheme := secretBackendBlocks[typ]
		bc, d := blk.Body.Content(attrSchema("cache_ttl", "folder_id", "runner_tokens", "region", "address", "auth", "mount", "role", "path"))
		*diags = append(*diags, d...)
		ba := newAttrs(l.ctx, bc.Attributes, diags)
		sb := SecretBackend{Scheme: scheme, CacheTTL: ba.duration("cache_ttl", s.CacheTTL, 0, Duration(24*time.Hour))}
		allowed := map[string][]string{
			"lockbox": {"folder_id", "runner_tokens"}, "aws_sm": {"region"}, "vault": {"address", "auth", "mount", "role"}, "local": {"path"},
		}[typ]
		for name := range bc.Attributes {
			ok := name == "cache_ttl"
			for _, x := range allowed {
				ok = ok || x == name
			}
			if !ok {
				ba.errorf(name, "Unsupported argument", "A %s block takes %s and cache_ttl, not %q.", typ, quoteList(allowed), name)
			}
		}
		switch typ {
		case "lockbox":
			sb.FolderID = ba.str("folder_id", "")
			sb.RunnerTokens = ba.str("runner_tokens", "")
		case "aws_sm":
			sb.Region = ba.str("region", "")
		case "vault":
			sb.Address = ba.str("address", "")
			sb.Auth = ba.enum("auth", "token", "token", "approle", "kubernetes")
			sb.Mount = ba.str("mount", "secret")
			sb.Role = ba.str("role", "")
			if sb.Address == "" {
				*diags = append(*diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Missing Vault address",
					Detail: "Set address = \"https://vault.example.com:8200\".", Subject: blk.DefRange.Ptr()})
			}
			if sb.Auth != "token" && sb.Role == "" {
				*diags = append(*diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Missing Vault role",
					Detail: fmt.Sprintf("Vault %s auth needs role.", sb.Auth), Subject: blk.DefRange.Ptr()})
			}
		case "local":
			sb.Path = l.nestPath(ba.str("path", ".gosling/secrets"))
			if cloud != CloudLocal {
				*diags = append(*diags, &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: "Local secret backend outside development",
					Detail: "The local backend is an encrypted file for the embedded development setup, not for production.", Subject: blk.DefRange.Ptr()})
			}
		}
		s.Backends[scheme] = sb
	}
	s.Backend = a.enum("backend", "", SecretSchemes...)
	if s.Backend == "" {
		switch {
		case len(s.Backends) == 1:
			for k := range s.Backends {
				s.Backend = k
			}
		case cloud == CloudYandex && s.Backends[SchemeLockbox].Scheme != "":
			s.Backend = SchemeLockbox
		case cloud == CloudAWS && s.Backends[SchemeAWSSM].Scheme != "":
			s.Backend = SchemeAWSSM
		}
	}
	if s.Backend != "" {
		if _, ok := s.Backends[s.Backend]; !ok {
			rng := a.rng("backend")
			if rng == nil {
				rng = b.DefRange.Ptr()
			}
			*diags = append(*diags, &hcl.Diagnostic{
				Severity: hcl.DiagError, Summary: "Secret backend not configured",
				Detail:  fmt.Sprintf("backend is %q but the secrets block has no %s block. Add it.", s.Backend, blockForScheme(s.Backend)),
				Subject: rng,
			})
		} else if s.Backend == SchemeLockbox && s.Backends[SchemeLockbox].FolderID == "" {
			*diags = append(*diags, &hcl.Diagnostic{
				Severity: hcl.DiagError, Summary: "No Lockbox folder for runner tokens",
				Detail: "Runner tokens go to Lockbox, each egg's to a secret of its own (<deployment>-runners-<egg>, which gosling deploy makes and only that egg's runners may read). " +
					"Set folder_id in the lockbox block to the folder they are in.",
				Subject: b.DefRange.Ptr(),
			})
		}
	}
	return s
}

func blockForScheme(scheme string) string {
	for b, s := range secretBackendBlocks {
		if s == scheme {
			return b
		}
	}
	return scheme
}

func (l *loader) decodeProvider(b *hcl.Block, diags *hcl.Diagnostics) (Provider, bool) {
	name := b.Labels[0]
	var schema *hcl.BodySchema
	switch name {
	case CloudYandex:
		schema = attrSchema("folder_id", "zone", "subnet_id", "service_account_key")
	case CloudAWS:
		schema = attrSchema("region", "role_arn", "subnets", "cluster", "vpc_id")
	case CloudLocal:
		schema = attrSchema("state_dir")
	default:
		*diags = append(*diags, &hcl.Diagnostic{
			Severity: hcl.DiagError, Summary: "Unknown provider",
			Detail:  fmt.Sprintf("Runners run on %s; got %q.%s", quoteList(runnerClouds), name, didYouMean(name, runnerClouds)),
			Subject: b.LabelRanges[0].Ptr(),
		})
		return Provider{}, false
	}
	c, d := b.Body.Content(schema)
	*diags = append(*diags, d...)
	a := newAttrs(l.ctx, c.Attributes, diags)
	p := Provider{Name: name}
	switch name {
	case CloudYandex:
		p.FolderID = a.str("folder_id", "")
		p.Zone = a.str("zone", "ru-central1-a")
		p.SubnetID = a.str("subnet_id", "")
		p.ServiceAccountKey = l.secret(a, "service_account_key")
		if p.FolderID == "" {
			*diags = append(*diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Missing folder",
				Detail: "The yandex provider needs folder_id, the folder runners are made in.", Subject: b.DefRange.Ptr()})
		}
	case CloudAWS:
		p.Region = a.str("region", "")
		p.RoleARN = a.str("role_arn", "")
		p.Subnets = a.strings("subnets")
		p.Cluster = a.str("cluster", "gosling-runners")
		p.VPCID = a.str("vpc_id", "")
		if p.VPCID != "" && !vpcIDRE.MatchString(p.VPCID) {
			a.errorf("vpc_id", "Invalid VPC ID", "%q is not a VPC ID: they read vpc- followed by 8 or 17 hexadecimal digits, such as vpc-0abc1234def567890 (aws ec2 describe-vpcs lists them).", p.VPCID)
		}
		if p.Region == "" {
			*diags = append(*diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Missing region",
				Detail: "The aws provider needs region, such as region = \"eu-central-1\".", Subject: b.DefRange.Ptr()})
		}
	case CloudLocal:
		p.StateDir = l.nestPath(a.str("state_dir", ".gosling/tofu"))
	}
	return p, true
}

// vpcIDRE matches an EC2 VPC ID.
var vpcIDRE = regexp.MustCompile(`^vpc-([0-9a-f]{8}|[0-9a-f]{17})$`)

// decodeState reads the state block (stb, nil when absent; its arguments
// in st). The backend defaults to pg with a postgresql database, else
// local; local on a cloud is a warning: it holds for one worker only.
func (l *loader) decodeState(st *attrs, stb *hcl.Block, mgDef hcl.Range, mg *MotherGoose, diags *hcl.Diagnostics) TofuState {
	s := TofuState{
		Backend: st.enum("backend", "", StateLocal, StatePG, StateS3),
		Bucket:  st.str("bucket", ""), Prefix: st.str("prefix", ""), Region: st.str("region", mg.Region),
		Endpoint: st.str("endpoint", ""), PathStyle: st.boolean("path_style", false),
		AccessKey: l.secret(st, "access_key"), SecretKey: l.secret(st, "secret_key"),
	}
	backend := s.Effective(mg.Database.Engine == "postgresql")
	for _, name := range []string{"bucket", "prefix", "region", "endpoint", "path_style", "access_key", "secret_key"} {
		if st.has(name) && backend != StateS3 {
			st.errorf(name, "Argument not used by this backend", "Backend %q does not read %s; only backend = \"s3\" does.", backend, name)
		}
	}
	if backend != StateS3 {
		s.Region = ""
	}
	switch backend {
	case StatePG:
		if mg.Database.Engine != "postgresql" {
			st.errorf("backend", "No PostgreSQL for the pg backend", "The pg backend keeps OpenTofu's states in the store's PostgreSQL database, but the database engine is %q. Use backend = \"s3\" with a bucket, or a postgresql database.", mg.Database.Engine)
		}
	case StateS3:
		if s.Bucket == "" {
			subject := st.rng("backend")
			*diags = append(*diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Missing state bucket",
				Detail: "The s3 backend needs bucket = \"...\", an S3 (or Yandex Object Storage) bucket the workers may read and write.", Subject: subject})
		}
		if s.Endpoint != "" {
			if u, err := url.Parse(s.Endpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				st.errorf("endpoint", "Invalid endpoint", "endpoint is the S3 API's URL, such as \"https://storage.yandexcloud.net\".")
			}
		}
		if s.AccessKey.IsZero() != s.SecretKey.IsZero() {
			name := "access_key"
			if s.AccessKey.IsZero() {
				name = "secret_key"
			}
			st.errorf(name, "Incomplete static key", "access_key and secret_key go together: both secret URIs of one static access key, or neither (the worker's own identity).")
		}
	case StateLocal:
		if mg.Cloud != CloudLocal {
			subject := mgDef
			if stb != nil {
				subject = stb.DefRange
			}
			*diags = append(*diags, &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: "OpenTofu state on each worker's disk",
				Detail:  "With the local state backend each mothergoose worker keeps the states of the machines it made: a teardown that lands on another worker finds none, and the machine is left running. Run a single mothergoose worker, or share the state: backend = \"s3\" with a bucket (AWS S3, Yandex Object Storage), or a postgresql database (backend pg).",
				Subject: subject.Ptr()})
		}
	}
	return s
}

// databaseAttrs lists the arguments each database engine reads.
var databaseAttrs = map[string][]string{
	"sqlite":     {"path"},
	"postgresql": {"dsn"},
	"dynamodb":   {"table_prefix", "region", "endpoint"},
	"ydb":        {"name", "endpoint", "document_api_endpoint", "table_prefix", "auth"},
}

var databaseSchema = attrSchema("engine", "endpoint", "name", "dsn", "path", "table_prefix", "region", "document_api_endpoint", "auth")

// YDBDocumentAPIHost serves the Document API of serverless YDB databases:
// a database's endpoint is this host followed by its path.
const YDBDocumentAPIHost = "https://docapi.serverless.yandexcloud.net"

// decodeDatabase reads the database block (dbb, nil when absent; its
// arguments in db) of the mothergoose block defined at mgDef.
func (l *loader) decodeDatabase(db *attrs, dbb *hcl.Block, mgDef hcl.Range, mg *MotherGoose, diags *hcl.Diagnostics) Database {
	defDB := map[string]string{CloudYandex: "ydb", CloudAWS: "dynamodb", CloudLocal: "sqlite"}[mg.Cloud]
	d := Database{
		Engine:   db.enum("engine", defDB, "sqlite", "postgresql", "ydb", "dynamodb"),
		Endpoint: db.str("endpoint", ""),
		Name:     db.str("name", ""),
		DSN:      l.secret(db, "dsn"),
		Path:     l.nestPath(db.str("path", "")),
	}
	l.checkCloudMatch(db, "engine", mg.Cloud, d.Engine, map[string]string{"ydb": CloudYandex, "dynamodb": CloudAWS}, diags)
	dbRange := mgDef
	if dbb != nil {
		dbRange = dbb.DefRange
	}
	d.At = fmt.Sprintf("%s:%d:%d", dbRange.Filename, dbRange.Start.Line, dbRange.Start.Column)
	for _, attr := range databaseSchema.Attributes[1:] {
		if used := databaseAttrs[d.Engine]; db.has(attr.Name) && used != nil && !slices.Contains(used, attr.Name) {
			hint := ""
			if attr.Name == "name" && d.Engine == "dynamodb" {
				hint = " DynamoDB tables are named by table_prefix (the table is <table_prefix>-store)."
			}
			db.errorf(attr.Name, "Argument not used by this engine", "Engine %q does not read %s; it reads %s.%s", d.Engine, attr.Name, quoteList(used), hint)
		}
	}
	if d.Engine == "dynamodb" || d.Engine == "ydb" {
		d.TablePrefix = db.str("table_prefix", "gosling")
		if err := ValidTablePrefix(d.TablePrefix); err != nil {
			db.errorf("table_prefix", "Invalid table prefix", "%v.", err)
		}
	}
	switch d.Engine {
	case "sqlite":
		if d.Path == "" {
			d.Path = ".gosling/gosling.db"
		}
		if mg.Cloud != CloudLocal {
			*diags = append(*diags, &hcl.Diagnostic{
				Severity: hcl.DiagError, Summary: "SQLite needs a single server",
				Detail:  "SQLite is the embedded default for cloud = \"local\". Serverless containers on a cloud share no disk: use postgresql, ydb (Yandex) or dynamodb (AWS).",
				Subject: dbRange.Ptr(),
			})
		}
	case "postgresql":
		if d.DSN.IsZero() {
			*diags = append(*diags, &hcl.Diagnostic{
				Severity: hcl.DiagError, Summary: "Missing database DSN",
				Detail:  "PostgreSQL needs dsn, a secret URI holding the connection string, such as dsn = \"vault://gosling/postgres/dsn\".",
				Subject: dbRange.Ptr(),
			})
		}
	case "ydb":
		d.DocumentAPIEndpoint = db.str("document_api_endpoint", "")
		d.Auth = db.enum("auth", "iam", "iam", "static")
		if d.Name != "" && !strings.HasPrefix(d.Name, "/") {
			db.errorf("name", "Invalid database path", "name is the YDB database's path, such as \"/ru-central1/b1g.../etn...\"; got %q.", d.Name)
		}
		switch {
		case d.DocumentAPIEndpoint != "":
			if err := validURL(d.DocumentAPIEndpoint, true); err != nil {
				db.errorf("document_api_endpoint", "Invalid Document API endpoint", "%v; the database's Document API endpoint looks like %s/ru-central1/b1g.../etn....", err, YDBDocumentAPIHost)
			}
		case d.Name != "":
			d.DocumentAPIEndpoint = YDBDocumentAPIHost + d.Name
		default:
			*diags = append(*diags, &hcl.Diagnostic{
				Severity: hcl.DiagError, Summary: "Missing YDB database",
				Detail:  "The store reaches YDB through its Document API: set name to the database path (/ru-central1/b1g.../etn...), or document_api_endpoint to the database's Document API endpoint (" + YDBDocumentAPIHost + "/ru-central1/b1g.../etn...).",
				Subject: dbRange.Ptr(),
			})
		}
	case "dynamodb":
		d.Region = db.str("region", mg.Region)
		if !awsRegionRE.MatchString(d.Region) {
			db.errorf("region", "Invalid AWS region", "%q is not an AWS region name such as \"eu-central-1\".", d.Region)
		}
		if d.Endpoint != "" {
			if err := validURL(d.Endpoint, false); err != nil {
				db.errorf("endpoint", "Invalid endpoint", "%v; leave endpoint out to use the region's DynamoDB endpoint.", err)
			}
		}
	}
	return d
}

var awsRegionRE = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)

var tablePrefixRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// ValidTablePrefix checks the prefix of DynamoDB and YDB table names: the
// table <prefix>-store must be a valid name (3 to 255 letters, digits,
// '_', '-' and '.').
func ValidTablePrefix(p string) error {
	switch {
	case p == "":
		return errors.New("the table prefix is empty")
	case !tablePrefixRE.MatchString(p):
		return fmt.Errorf("table prefix %q may hold only letters, digits, '_', '-' and '.'", p)
	case len(p) > 200:
		return fmt.Errorf("table prefix %q is longer than 200 characters", p)
	}
	return nil
}

// validURL checks an http(s) URL; withPath asks for a path after the host.
func validURL(s string, withPath bool) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http:// or https:// URL", s)
	}
	if withPath && strings.Trim(u.Path, "/") == "" {
		return fmt.Errorf("%q has no database path", s)
	}
	return nil
}
