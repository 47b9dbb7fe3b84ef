package awstest

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
)

// TestSecurityGroups checks, through the real SDK client, the stand-in's
// EC2 security groups: a new group has EC2's default egress rule, filters
// by tag and VPC find it, a rule to another group reads back as one, a
// second one is InvalidPermission.Duplicate, a group another group's rule
// names cannot be deleted (DependencyViolation), and a deleted group is
// InvalidGroup.NotFound.
func TestSecurityGroups(t *testing.T) {
	ctx := context.Background()
	srv := New()
	defer srv.Close()
	c := ec2.NewFromConfig(Config(srv.URL))
	code := func(err error) string {
		var ae smithy.APIError
		if errors.As(err, &ae) {
			return ae.ErrorCode()
		}
		return ""
	}
	create := func(name string) string {
		t.Helper()
		out, err := c.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{
			GroupName: aws.String(name), Description: aws.String("test " + name), VpcId: aws.String("vpc-1"),
			TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSecurityGroup, Tags: []ec2types.Tag{{Key: aws.String("team"), Value: aws.String("ci")}}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.GroupId)
	}
	a, b := create("a"), create("b")
	if _, err := c.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String("a"), Description: aws.String("again"), VpcId: aws.String("vpc-1")}); code(err) != "InvalidGroup.Duplicate" {
		t.Errorf("second group a: %v", err)
	}
	got, err := c.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{
		{Name: aws.String("tag:team"), Values: []string{"ci"}}, {Name: aws.String("vpc-id"), Values: []string{"vpc-1"}}, {Name: aws.String("group-name"), Values: []string{"a"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.SecurityGroups) != 1 {
		t.Fatalf("groups: %+v", got.SecurityGroups)
	}
	g := got.SecurityGroups[0]
	if aws.ToString(g.GroupId) != a || aws.ToString(g.Description) != "test a" || len(g.Tags) != 1 || len(g.IpPermissionsEgress) != 1 ||
		aws.ToString(g.IpPermissionsEgress[0].IpProtocol) != "-1" || aws.ToString(g.IpPermissionsEgress[0].IpRanges[0].CidrIp) != "0.0.0.0/0" {
		t.Errorf("group a: %+v", g)
	}
	perm := []ec2types.IpPermission{{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(8080), ToPort: aws.Int32(8080), UserIdGroupPairs: []ec2types.UserIdGroupPair{{GroupId: &a}}}}
	if _, err := c.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: &b, IpPermissions: perm}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: &b, IpPermissions: perm}); code(err) != "InvalidPermission.Duplicate" {
		t.Errorf("duplicate rule: %v", err)
	}
	got, err = c.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{b}})
	if err != nil {
		t.Fatal(err)
	}
	in := got.SecurityGroups[0].IpPermissions
	if len(in) != 1 || aws.ToInt32(in[0].FromPort) != 8080 || len(in[0].UserIdGroupPairs) != 1 || aws.ToString(in[0].UserIdGroupPairs[0].GroupId) != a {
		t.Errorf("ingress of b: %+v", in)
	}
	if _, err := c.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: &a}); code(err) != "DependencyViolation" {
		t.Errorf("delete a while b's rule names it: %v", err)
	}
	if _, err := c.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{GroupId: &b, IpPermissions: perm}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{GroupId: &b, IpPermissions: perm}); code(err) != "InvalidPermission.NotFound" {
		t.Errorf("revoke again: %v", err)
	}
	if _, err := c.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: &a}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{a}}); code(err) != "InvalidGroup.NotFound" {
		t.Errorf("describe a deleted group: %v", err)
	}
}
