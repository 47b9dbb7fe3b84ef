package bootstrap

import (
	"context"
	"maps"
	"slices"
	"strings"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/runnerid"
)

// Runner identities: each egg whose runners run on the deployment's cloud
// gets an identity of its own that its machines run as, allowed to read
// that egg's runner tokens and the egg's own secrets (its Rift
// credentials, the secret variables of its jobs, which the agent resolves
// on the machine) and nothing else. They are named by internal/runnerid,
// by which the workers find them.

// runnerEggs lists the eggs whose runners may run on cloud.
func runnerEggs(n *fly.Nest, cloud string) []fly.Egg {
	var out []fly.Egg
	for _, e := range n.Eggs {
		if slices.Contains(e.Runner.Clouds, cloud) {
			out = append(out, e)
		}
	}
	return out
}

// eggSecrets are the secrets of an egg, other than its runner tokens, that
// its runners' machines read: its jobs' secret variables and its Rift
// credentials, the URIs of scheme only.
func eggSecrets(e fly.Egg, scheme string) []fly.SecretURI {
	refs := []fly.SecretRef{}
	for _, v := range e.Runner.Env {
		refs = append(refs, v.Secret)
	}
	if r := e.Rift; r != nil {
		refs = append(refs, fly.SecretRef(r.AccessKey), r.SecretKey)
		if r.Mirror != nil {
			refs = append(refs, r.Mirror.Password)
		}
	}
	var out []fly.SecretURI
	seen := map[string]bool{}
	for _, ref := range refs {
		u, err := ref.Parse()
		if ref.IsZero() || err != nil || u.Scheme != scheme || seen[u.Path] {
			continue
		}
		seen[u.Path] = true
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b fly.SecretURI) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// awsRunnerIdentities are, per egg with runners on AWS, its runner role
// (with an instance profile of the same name), trusted by EC2, ECS tasks
// and Lambda, which may read the egg's runner tokens
// (gosling/<deployment>/runners/<egg>/*) and the egg's own Secrets
// Manager secrets, and write to the runners' log group; and its ECS task
// execution role, which may pull images, read the egg's runner tokens into
// a task's secrets and write the task's logs.
func awsRunnerIdentities(n *fly.Nest, acct AWSAccount, tags map[string]string) []Resource {
	dep := DeploymentName(n)
	logs := allow(many("logs:CreateLogStream", "logs:PutLogEvents"), acct.arn("logs", "log-group:/gosling/"+dep+"/runners:*"))
	var out []Resource
	for _, e := range runnerEggs(n, fly.CloudAWS) {
		tokens := allow(single("secretsmanager:GetSecretValue"), acct.arn("secretsmanager", "secret:"+runnerid.AWSTokenPrefix(dep, e.Name)+"*"))
		var own *PolicyStatement
		if secrets := eggSecrets(e, fly.SchemeAWSSM); len(secrets) > 0 {
			var arns []string
			for _, u := range secrets {
				arns = append(arns, acct.arn("secretsmanager", "secret:"+u.Path+"-??????"))
			}
			own = allow(single("secretsmanager:GetSecretValue"), arns...)
		}
		role := runnerid.AWSRole(dep, e.Name)
		runnerPolicy := policy(tokens, own, logs)
		out = append(out, Resource{Type: AWSRole, Name: strings.TrimPrefix(role, dep+"-"), Props: RoleProps{
			Name: role, Path: runnerid.AWSPath(dep), InstanceProfile: true, Tags: tags,
			Description:      "Runners of egg " + e.Name + " (VMs, ECS tasks, Lambda functions): read the egg's runner tokens and secrets, write their logs",
			AssumeRolePolicy: policy(assumedBy(many("ec2.amazonaws.com", "ecs-tasks.amazonaws.com", "lambda.amazonaws.com"))),
			Policy:           &runnerPolicy,
		}})
		exec := runnerid.AWSExecutionRole(dep, e.Name)
		execPolicy := policy(
			allow(many("ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"), "*"),
			tokens, logs)
		out = append(out, Resource{Type: AWSRole, Name: strings.TrimPrefix(exec, dep+"-"), Props: RoleProps{
			Name: exec, Path: runnerid.AWSPath(dep), Tags: tags,
			Description:      "ECS task execution of egg " + e.Name + "'s runners: pull the image, read the egg's runner tokens into the task, write its logs",
			AssumeRolePolicy: policy(assumedBy(single("ecs-tasks.amazonaws.com"))),
			Policy:           &execPolicy,
		}})
	}
	return out
}

// awsRunnerRoleARNs are the ARNs of every egg's runner roles, which the
// workers look up (iam:GetRole) and pass to the machines they make
// (iam:PassRole), and of their instance profiles.
func awsRunnerRoleARNs(n *fly.Nest, acct AWSAccount) (roles, profiles []string) {
	dep := DeploymentName(n)
	for _, e := range runnerEggs(n, fly.CloudAWS) {
		for _, r := range []string{runnerid.AWSRole(dep, e.Name), runnerid.AWSExecutionRole(dep, e.Name)} {
			roles = append(roles, acct.arn("iam", "role"+runnerid.AWSPath(dep)+r))
		}
		profiles = append(profiles, acct.arn("iam", "instance-profile"+runnerid.AWSPath(dep)+runnerid.AWSRole(dep, e.Name)))
	}
	return roles, profiles
}

// awsWorkerRunnerStatements are what a worker needs of the runners'
// machines on AWS beside OpenTofu: look up each egg's runner roles and pass
// them to the machines it makes, and find (DescribeInstances) and
// terminate the deployment's instances, only those tagged with it.
func awsWorkerRunnerStatements(n *fly.Nest, acct AWSAccount) []*PolicyStatement {
	roles, profiles := awsRunnerRoleARNs(n, acct)
	terminate := allow(single("ec2:TerminateInstances"), acct.arn("ec2", "instance/*"))
	terminate.Condition = map[string]map[string]Values{"StringEquals": {"aws:ResourceTag/gosling:deployment": single(DeploymentName(n))}}
	out := []*PolicyStatement{allow(single("ec2:DescribeInstances"), "*"), terminate}
	if len(roles) > 0 {
		out = append(out,
			allow(many("iam:GetRole", "iam:PassRole"), roles...),
			allow(single("iam:GetInstanceProfile"), profiles...))
	}
	return out
}

// yandexRunnerIdentities are, per egg with runners on Yandex Cloud, its
// runner service account, the Lockbox secret of its runner tokens (made
// empty, never deleted; one entry per runner, written by the workers), and
// lockbox.payloadViewer for the account on that secret and on each of the
// egg's own Lockbox secrets: bound per secret, never on the folder.
func yandexRunnerIdentities(n *fly.Nest, folder string, labels map[string]string) []Resource {
	dep := DeploymentName(n)
	var out []Resource
	for _, e := range runnerEggs(n, fly.CloudYandex) {
		saName := runnerid.YandexServiceAccount(dep, e.Name)
		sa := YCServiceAccount + "." + strings.TrimPrefix(saName, dep+"-")
		secret := runnerid.LockboxTokenSecret(dep, e.Name)
		secretKey := strings.TrimPrefix(secret, dep+"-")
		eggLabels := map[string]string{TagDeployment: dep, "gosling-egg": e.Name}
		maps.Copy(eggLabels, labels)
		out = append(out,
			Resource{Type: YCServiceAccount, Name: strings.TrimPrefix(saName, dep+"-"), Props: ServiceAccountProps{
				Name: saName, FolderID: folder,
				Description: "gosling " + dep + ": runners of egg " + e.Name + " (VMs, Serverless Containers): read the egg's runner tokens and secrets",
			}},
			Resource{Type: YCSecret, Name: secretKey, Props: LockboxSecretProps{
				Name: secret, FolderID: folder, Labels: eggLabels,
				Description: "gosling " + dep + ": runner tokens of egg " + e.Name + ", one entry per runner",
			}},
			Resource{Type: YCSecretBinding, Name: secretKey, Props: ResourceBindingProps{
				ResourceID: Ref(YCSecret+"."+secretKey, "id"), ServiceAccountID: Ref(sa, "id"), Roles: []string{"lockbox.payloadViewer"},
			}},
		)
		for _, u := range eggSecrets(e, fly.SchemeLockbox) {
			out = append(out, Resource{Type: YCSecretBinding, Name: strings.TrimPrefix(saName, dep+"-") + "-" + u.Path, Props: ResourceBindingProps{
				ResourceID: u.Path, ServiceAccountID: Ref(sa, "id"), Roles: []string{"lockbox.payloadViewer"},
			}})
		}
	}
	return out
}

// readRunnerBindings reads the roles each runner service account of sas
// holds on the secrets the hints bind it to: the eggs' token secrets
// (their IDs from secrets, as read) and the eggs' own.
func (p *YandexProvider) readRunnerBindings(ctx context.Context, sas, secrets, hints []Resource) ([]Resource, error) {
	ids := map[string]string{}
	for _, r := range append(slices.Clone(sas), secrets...) {
		ids[r.Address()] = r.ID
	}
	// resolve turns a hint's ${address.id} into the ID read.
	resolve := func(v string) string {
		if addr, ok := strings.CutPrefix(v, "${"); ok {
			return ids[strings.TrimSuffix(strings.TrimSuffix(addr, "}"), ".id")]
		}
		return v
	}
	targets := map[string]map[string]string{} // by service account ID
	for _, h := range hints {
		if h.Type != YCSecretBinding {
			continue
		}
		b := as[ResourceBindingProps](h)
		sa, target := resolve(b.ServiceAccountID), resolve(b.ResourceID)
		if sa == "" || target == "" || !strings.HasPrefix(b.ServiceAccountID, "${"+YCServiceAccount+".runner-") {
			continue
		}
		if targets[sa] == nil {
			targets[sa] = map[string]string{}
		}
		targets[sa][target] = h.Name
	}
	var out []Resource
	for _, sa := range slices.Sorted(maps.Keys(targets)) {
		bs, err := p.readResourceBindings(ctx, YCSecretBinding, sa, targets[sa])
		if err != nil {
			return nil, err
		}
		out = append(out, bs...)
	}
	return out, nil
}
