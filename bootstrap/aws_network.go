package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// The security groups of the gateway's path to the API service and of the
// workers (awsSecurityGroups), and their rules. A group is found again by
// its deployment tag; its rules are read from the group itself
// (DescribeSecurityGroups' IpPermissions and IpPermissionsEgress), one
// aws_security_group_rule per peer, named <group>-<ingress|egress>-<peer>.

// securityGroupWait bounds how long a group's deletion waits for the
// network interfaces that named it to go: ECS releases a stopped task's
// interface and API Gateway a deleted VPC link's some minutes later, and
// EC2 refuses the deletion with DependencyViolation until then.
const securityGroupWait = 20 * time.Minute

func ec2Tags(m map[string]string) []ec2types.Tag {
	var out []ec2types.Tag
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, ec2types.Tag{Key: aws.String(k), Value: aws.String(m[k])})
	}
	return out
}

// readSecurityGroups reads the groups tagged with the deployment, in any
// VPC (a group left in a VPC the provider no longer names is found and
// planned for deletion), and their rules.
func (p *AWSProvider) readSecurityGroups(ctx context.Context, _ []Resource) ([]Resource, error) {
	var groups []ec2types.SecurityGroup
	pg := ec2.NewDescribeSecurityGroupsPaginator(p.ec2, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{
		{Name: aws.String("tag:" + TagDeployment), Values: []string{p.Deployment}},
	}})
	for it, err := range sdkPages(ctx, pg.HasMorePages, pg.NextPage, func(o *ec2.DescribeSecurityGroupsOutput) []ec2types.SecurityGroup { return o.SecurityGroups }) {
		if err != nil {
			return nil, fmt.Errorf("describe the security groups tagged %s=%s: %w", TagDeployment, p.Deployment, err)
		}
		groups = append(groups, it)
	}
	names := map[string]string{} // group ID -> resource name
	var out []Resource
	for _, g := range groups {
		id, name := aws.ToString(g.GroupId), aws.ToString(g.GroupName)
		tags := map[string]string{}
		for _, t := range g.Tags {
			tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
		}
		rn := strings.TrimPrefix(name, p.Deployment+"-")
		names[id] = rn
		out = append(out, Resource{Type: AWSSecurityGroup, Name: rn, ID: id,
			Outputs: map[string]string{"id": id, "arn": aws.ToString(g.SecurityGroupArn)},
			Props:   SecurityGroupProps{Name: name, Description: aws.ToString(g.Description), VPCID: aws.ToString(g.VpcId), Tags: tags}})
	}
	for _, g := range groups {
		id := aws.ToString(g.GroupId)
		taken := map[string]bool{}
		for _, dir := range []struct {
			kind  string
			perms []ec2types.IpPermission
		}{{"ingress", g.IpPermissions}, {"egress", g.IpPermissionsEgress}} {
			for _, perm := range dir.perms {
				for _, r := range rulesOf(id, dir.kind, perm, names) {
					if taken[r.Name] {
						rule := as[SecurityGroupRuleProps](r)
						r.Name += "-" + resourceName(fmt.Sprintf("%s-%v-%v", rule.Protocol, rule.FromPort, rule.ToPort))
					}
					taken[r.Name] = true
					out = append(out, r)
				}
			}
		}
	}
	return out, nil
}

// rulesOf splits one IpPermission of group into one rule per peer (a
// group, an IPv4 or an IPv6 range); names maps the deployment's group IDs
// to their resource names, which name the rules.
func rulesOf(group, kind string, perm ec2types.IpPermission, names map[string]string) []Resource {
	protocol := aws.ToString(perm.IpProtocol)
	from, to := int(aws.ToInt32(perm.FromPort)), int(aws.ToInt32(perm.ToPort))
	if protocol == allProtocols {
		from, to = 0, 0
	}
	var out []Resource
	add := func(peer, source, cidr string) {
		cidrs := []string{}
		if cidr != "" {
			cidrs = append(cidrs, cidr)
		}
		props := SecurityGroupRuleProps{
			SecurityGroupID: group, Type: kind, Protocol: protocol, FromPort: from, ToPort: to,
			SourceSecurityGroupID: source, CIDRBlocks: cidrs,
		}
		id := fmt.Sprintf("%s/%s/%s/%d/%d/%s%s", group, kind, protocol, from, to, source, cidr)
		out = append(out, Resource{Type: AWSSecurityGroupRule, Name: ruleName(names[group], kind, peer), ID: id, Props: props})
	}
	for _, pair := range perm.UserIdGroupPairs {
		source := aws.ToString(pair.GroupId)
		peer, ok := names[source]
		if !ok {
			peer = source
		}
		add(peer, source, "")
	}
	for _, r := range perm.IpRanges {
		cidr := aws.ToString(r.CidrIp)
		peer := resourceName(cidr)
		if cidr == allIPv4 {
			peer = "all"
		}
		add(peer, "", cidr)
	}
	for _, r := range perm.Ipv6Ranges {
		cidr := aws.ToString(r.CidrIpv6)
		add(resourceName(cidr), "", cidr)
	}
	return out
}

// putSecurityGroup makes a group without AWS's default egress rule, or
// retags one. A group's name, description and VPC cannot change in EC2:
// another one stops the deploy with the commands that delete it.
func (p *AWSProvider) putSecurityGroup(ctx context.Context, before *Resource, r Resource) error {
	want := as[SecurityGroupProps](r)
	name, vpc := want.Name, want.VPCID
	if before != nil {
		had := as[SecurityGroupProps](*before)
		if had.Name != name || had.Description != want.Description || had.VPCID != vpc {
			return fmt.Errorf("a security group keeps its name, description and VPC (%s in %s): delete security group %s (aws ec2 delete-security-group --group-id %s) after the ECS services and the VPC link that name it, and deploy again",
				had.Name, had.VPCID, before.ID, before.ID)
		}
		_, err := p.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{before.ID}, Tags: ec2Tags(want.Tags)})
		return err
	}
	out, err := p.ec2.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{
		GroupName: &name, Description: aws.String(want.Description), VpcId: &vpc,
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSecurityGroup, Tags: ec2Tags(want.Tags)}},
	})
	if err != nil {
		return err
	}
	// EC2 gives a new group an egress rule to anywhere; the group's
	// aws_security_group_rule resources are all it allows.
	if err := p.revokeDefaultEgress(ctx, out.GroupId); err != nil {
		return errors.Join(err, p.deleteSecurityGroup(context.WithoutCancel(ctx), aws.ToString(out.GroupId)))
	}
	return nil
}

func (p *AWSProvider) revokeDefaultEgress(ctx context.Context, id *string) error {
	got, err := p.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{aws.ToString(id)}})
	if err != nil {
		return err
	}
	for _, g := range got.SecurityGroups {
		if len(g.IpPermissionsEgress) == 0 {
			continue
		}
		if _, err := p.ec2.RevokeSecurityGroupEgress(ctx, &ec2.RevokeSecurityGroupEgressInput{GroupId: id, IpPermissions: g.IpPermissionsEgress}); err != nil {
			return fmt.Errorf("revoke the default egress rule of security group %s: %w", aws.ToString(id), err)
		}
	}
	return nil
}

// deleteSecurityGroup deletes a group, waiting while network interfaces
// still name it (DependencyViolation); one already gone is no error.
func (p *AWSProvider) deleteSecurityGroup(ctx context.Context, id string) error {
	deadline := time.Now().Add(securityGroupWait)
	for {
		_, err := p.ec2.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: &id})
		switch code := apiCode(err); {
		case err == nil, code == "InvalidGroup.NotFound":
			return nil
		case code != "DependencyViolation" || time.Now().After(deadline):
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Second):
		}
	}
}

// ipPermission is a rule's IpPermission: with all protocols no ports, and
// either the source (ingress) or destination (egress) group or the CIDR
// blocks.
func ipPermission(r Resource) ec2types.IpPermission {
	rule := as[SecurityGroupRuleProps](r)
	protocol := rule.Protocol
	perm := ec2types.IpPermission{IpProtocol: &protocol}
	if protocol != allProtocols {
		perm.FromPort, perm.ToPort = aws.Int32(int32(rule.FromPort)), aws.Int32(int32(rule.ToPort))
	}
	if g := rule.SourceSecurityGroupID; g != "" {
		perm.UserIdGroupPairs = []ec2types.UserIdGroupPair{{GroupId: &g}}
	}
	for _, c := range rule.CIDRBlocks {
		if strings.Contains(c, ":") {
			perm.Ipv6Ranges = append(perm.Ipv6Ranges, ec2types.Ipv6Range{CidrIpv6: aws.String(c)})
		} else {
			perm.IpRanges = append(perm.IpRanges, ec2types.IpRange{CidrIp: aws.String(c)})
		}
	}
	return perm
}

// putSecurityGroupRule authorizes a rule; an update revokes the rule as
// it was first, as EC2 has no rule to change in place here.
func (p *AWSProvider) putSecurityGroupRule(ctx context.Context, before *Resource, r Resource) error {
	if before != nil {
		if err := p.revokeSecurityGroupRule(ctx, *before); err != nil {
			return err
		}
	}
	rule := as[SecurityGroupRuleProps](r)
	group := aws.String(rule.SecurityGroupID)
	perms := []ec2types.IpPermission{ipPermission(r)}
	var err error
	if rule.Type == "egress" {
		_, err = p.ec2.AuthorizeSecurityGroupEgress(ctx, &ec2.AuthorizeSecurityGroupEgressInput{GroupId: group, IpPermissions: perms})
	} else {
		_, err = p.ec2.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: group, IpPermissions: perms})
	}
	return err
}

// revokeSecurityGroupRule revokes a rule; one gone already, or gone with
// its group, is no error.
func (p *AWSProvider) revokeSecurityGroupRule(ctx context.Context, r Resource) error {
	rule := as[SecurityGroupRuleProps](r)
	group := aws.String(rule.SecurityGroupID)
	perms := []ec2types.IpPermission{ipPermission(r)}
	var err error
	if rule.Type == "egress" {
		_, err = p.ec2.RevokeSecurityGroupEgress(ctx, &ec2.RevokeSecurityGroupEgressInput{GroupId: group, IpPermissions: perms})
	} else {
		_, err = p.ec2.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{GroupId: group, IpPermissions: perms})
	}
	if code := apiCode(err); code == "InvalidPermission.NotFound" || code == "InvalidGroup.NotFound" {
		return nil
	}
	return err
}
