package bootstrap

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
)

// Props is the configuration of one resource: a struct of its kind (such
// as RoleProps for aws_iam_role), whose JSON field names are the keys a
// plan prints, a diff compares and a journal keeps. Builders and providers
// use the struct; only the engine turns it into its comparable form
// (Comparable) to diff it, print it and resolve references in it.
type Props interface{ isProps() }

// propsKinds maps a resource type to the zero value of its Props struct.
var propsKinds = map[string]Props{
	GitLabHook: HookProps{},

	AWSRole:     RoleProps{},
	AWSLogGroup: LogGroupProps{},
	AWSSecret:   SecretProps{},
	AWSTable:    TableProps{},

	AWSCluster:       ClusterProps{},
	AWSService:       ServiceProps{},
	AWSScalingTarget: ScalingTargetProps{},
	AWSScalingPolicy: ScalingPolicyProps{},

	AWSSecurityGroup:     SecurityGroupProps{},
	AWSSecurityGroupRule: SecurityGroupRuleProps{},
	AWSNamespace:         NamespaceProps{},
	AWSDiscoveryService:  DiscoveryServiceProps{},

	AWSFunction:    FunctionProps{},
	AWSPermission:  PermissionProps{},
	AWSAPI:         APIProps{},
	AWSVPCLink:     VPCLinkProps{},
	AWSIntegration: IntegrationProps{},
	AWSAuthorizer:  AuthorizerProps{},
	AWSRoute:       RouteProps{},
	AWSStage:       StageProps{},
	AWSDomainName:  DomainNameProps{},
	AWSAPIMapping:  APIMappingProps{},

	AWSQueue:         QueueProps{},
	YCQueue:          QueueProps{},
	AWSScheduleGroup: ScheduleGroupProps{},
	AWSSchedule:      ScheduleProps{},

	YCServiceAccount:  ServiceAccountProps{},
	YCFolderBinding:   FolderBindingProps{},
	YCSecretBinding:   ResourceBindingProps{},
	YCFunctionBinding: ResourceBindingProps{},
	YCSecret:          LockboxSecretProps{},
	YCDatabase:        DatabaseProps{},
	YCContainer:       ContainerProps{},
	YCTrigger:         TriggerProps{},
	YCGateway:         GatewayProps{},
	YCFunction:        CloudFunctionProps{},
	YCInstanceGroup:   InstanceGroupProps{},
}

// Comparable is p's comparable form: its JSON as decoded values (string,
// float64, bool, []any, map[string]any), never nil. Diff compares it,
// plans print it.
func Comparable(p Props) map[string]any {
	if p == nil {
		return map[string]any{}
	}
	b, err := json.Marshal(p)
	if err != nil {
		panic(fmt.Sprintf("bootstrap: props %T are not JSON: %v", p, err))
	}
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	if out == nil {
		out = map[string]any{}
	}
	return out
}

// decodeProps reads the JSON configuration of a resource of type typ into
// its kind's struct. Keys the struct does not have, and types gosling has
// no kind for, are refused, so a journal written by another version of
// gosling is never half read.
func decodeProps(typ string, doc []byte) (Props, error) {
	zero, ok := propsKinds[typ]
	if !ok {
		return nil, fmt.Errorf("no resource kind %s", typ)
	}
	ptr := reflect.New(reflect.TypeOf(zero))
	if string(doc) != "null" && len(doc) > 0 {
		dec := json.NewDecoder(bytes.NewReader(doc))
		dec.DisallowUnknownFields()
		if err := dec.Decode(ptr.Interface()); err != nil {
			return nil, fmt.Errorf("props of %s: %w", typ, err)
		}
	}
	return ptr.Elem().Interface().(Props), nil
}

// fromComparable turns a comparable form back into typ's Props.
func fromComparable(typ string, m map[string]any) Props {
	b, err := json.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("bootstrap: props of %s are not JSON: %v", typ, err))
	}
	p, err := decodeProps(typ, b)
	if err != nil {
		panic(fmt.Sprintf("bootstrap: %v", err))
	}
	return p
}

// UnmarshalJSON reads a resource, its Props into its kind's struct: the
// journal's format, which is also that of entries written while every
// kind's props were plain JSON objects.
func (r *Resource) UnmarshalJSON(b []byte) error {
	type plain Resource
	var doc struct {
		plain
		Props json.RawMessage `json:"props"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return err
	}
	p, err := decodeProps(doc.Type, doc.Props)
	if err != nil {
		return fmt.Errorf("resource %s.%s: %w", doc.Type, doc.Name, err)
	}
	*r = Resource(doc.plain)
	r.Props = p
	return nil
}

// as is r's Props as its kind's struct T. The engine decodes every
// resource's Props into its kind's struct (propsKinds), so another type
// here is a bug of gosling's own, and panics.
func as[T Props](r Resource) T {
	p, ok := r.Props.(T)
	if !ok {
		var want T
		panic(fmt.Sprintf("bootstrap: %s has props %T, not %T", r.Address(), r.Props, want))
	}
	return p
}

// cloudNamed is the Props of a kind whose cloud name (a role's, a log
// group's) finds it.
type cloudNamed interface{ cloudName() string }

// propsName is the cloud name in p ("" for a kind without one).
func propsName(p Props) string {
	if n, ok := p.(cloudNamed); ok {
		return n.cloudName()
	}
	return ""
}
