package bootstrap

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
)

// Call is one way a resource deploy makes reaches Gosling's own code: a
// command a runtime starts, an HTTP request it sends, or a queue whose
// messages something must consume. Calls lists them so that a test can
// hold each against the code: the command exists, the route is served
// with the authentication the resource sends, the queue has a consumer.
type Call struct {
	// Resource is the address of the resource that calls.
	Resource string `json:"resource"`
	// Kind is CallCommand, CallHTTP or CallQueue.
	Kind string `json:"kind"`
	// Component is the server called: api, mothergoose-worker,
	// uglyfox-worker or auth (the gateway's authorizer).
	Component string `json:"component,omitempty"`
	// Args are a command's gosling arguments.
	Args []string `json:"args,omitempty"`
	// Env are the environment variables the runtime sets beside them
	// (PORT for Serverless Containers).
	Env []string `json:"env,omitempty"`
	// Method and Path are an HTTP call's; Method "ANY" is every method,
	// and a Path ending in "/*" every path under it.
	Method string `json:"method,omitempty"`
	Path   string `json:"path,omitempty"`
	// Port is the port an HTTP call is sent to when the resource names
	// it (a health check); 0 is the port the component serves requests on.
	Port int `json:"port,omitempty"`
	// Auth is what the caller sends: AuthNone, AuthBearer (an API token,
	// checked by the gateway's authorizer and passed on),
	// AuthGitLabToken (an egg's webhook secret in X-Gitlab-Token) or
	// AuthPassThrough (whatever the client sent; the route's own checks
	// apply).
	Auth string `json:"auth,omitempty"`
	// Queue is the name of a queue whose messages must be consumed.
	Queue string `json:"queue,omitempty"`
}

// Call kinds and what a call authenticates with.
const (
	CallCommand = "command"
	CallHTTP    = "http"
	CallQueue   = "queue"

	AuthNone        = "none"
	AuthBearer      = "bearer"
	AuthGitLabToken = "gitlab-token"
	AuthPassThrough = "pass-through"
)

// Calls lists what the resources send to Gosling (see Call). Resources of
// types that reach no Gosling code (roles, secrets, databases) have none;
// a resource that calls Gosling in a way Calls does not know is an error,
// so that a new kind of resource cannot escape the contract test.
func Calls(resources []Resource) ([]Call, error) {
	var out []Call
	for _, r := range resources {
		addr := r.Address()
		switch r.Type {
		case YCContainer:
			var args []string
			if rev := as[ContainerProps](r).Revision; rev != nil {
				args = rev.Args
			}
			out = append(out, Call{Resource: addr, Kind: CallCommand, Component: r.Name, Args: args, Env: []string{"PORT=8080"}})
		case YCInstanceGroup:
			g := as[InstanceGroupProps](r)
			hc := g.HealthCheck
			out = append(out,
				Call{Resource: addr, Kind: CallCommand, Component: r.Name, Args: g.Instance.Container.Args},
				Call{Resource: addr, Kind: CallHTTP, Component: r.Name, Method: "GET", Path: hc.Path, Port: int(hc.Port), Auth: AuthNone})
		case YCTrigger:
			// The trigger invokes the container as a service account: the
			// platform checks that, the container receives no credential.
			t := as[TriggerProps](r)
			out = append(out, Call{Resource: addr, Kind: CallHTTP, Component: containerOfRef(r, t.ContainerID), Method: "POST", Path: t.Path, Auth: AuthNone})
		case YCQueue, AWSQueue:
			out = append(out, Call{Resource: addr, Kind: CallQueue, Queue: as[QueueProps](r).Name})
		case AWSSchedule:
			out = append(out, Call{Resource: addr, Kind: CallQueue, Queue: as[ScheduleProps](r).Target.ARN})
		case YCGateway:
			calls, err := gatewayCalls(r)
			if err != nil {
				return nil, err
			}
			out = append(out, calls...)
		case AWSService:
			out = append(out, Call{Resource: addr, Kind: CallCommand, Component: r.Name, Args: as[ServiceProps](r).Task.Command})
		case AWSFunction:
			out = append(out, Call{Resource: addr, Kind: CallCommand, Component: r.Name, Args: as[FunctionProps](r).Command})
		case AWSRoute:
			key := as[RouteProps](r).RouteKey
			c := Call{Resource: addr, Kind: CallHTTP, Component: "api", Method: "ANY", Path: "/*", Auth: AuthPassThrough}
			if key != "$default" {
				method, path, _ := strings.Cut(key, " ")
				c.Method, c.Path = method, strings.Replace(path, "{proxy+}", "*", 1)
			}
			if as[RouteProps](r).AuthorizationType == "CUSTOM" {
				c.Auth = AuthBearer
			}
			out = append(out, c)
		case GitLabHook:
			hook := as[HookProps](r).URL
			if i := strings.LastIndex(hook, "}"); i >= 0 {
				hook = hook[i+1:] // after a reference to the gateway's endpoint
			}
			u, err := url.Parse(hook)
			if err != nil {
				return nil, fmt.Errorf("%s: url: %w", addr, err)
			}
			out = append(out, Call{Resource: addr, Kind: CallHTTP, Component: "api", Method: "POST", Path: u.Path, Auth: AuthGitLabToken})
		}
	}
	return out, nil
}

// gatewayCalls are the routes of a Yandex API gateway's OpenAPI spec that
// integrate with a container.
func gatewayCalls(r Resource) ([]Call, error) {
	var spec openAPISpec
	if err := json.Unmarshal(as[GatewayProps](r).OpenAPISpec, &spec); err != nil {
		return nil, fmt.Errorf("%s: openapi_spec: %w", r.Address(), err)
	}
	var out []Call
	for _, path := range slices.Sorted(maps.Keys(spec.Paths)) {
		for method, op := range spec.Paths[path] {
			integ := op.Integration
			if integ.Type != "serverless_containers" {
				return nil, fmt.Errorf("%s: %s %s integrates with %q, which the contract does not know", r.Address(), method, path, integ.Type)
			}
			m := strings.ToUpper(method)
			if method == anyMethod {
				m = "ANY"
			}
			c := Call{Resource: r.Address(), Kind: CallHTTP, Component: containerOfRef(r, integ.ContainerID), Method: m,
				Path: strings.Replace(path, "{proxy+}", "*", 1), Auth: AuthPassThrough}
			if len(op.Security) > 0 {
				c.Auth = AuthBearer
			}
			out = append(out, c)
		}
	}
	return out, nil
}

// containerOfRef names the container a reference
// ${yandex_serverless_container.NAME.id} points at.
func containerOfRef(r Resource, ref string) string {
	inner, ok := strings.CutPrefix(ref, "${"+YCContainer+".")
	if !ok {
		return "(" + ref + ")"
	}
	name, _, _ := strings.Cut(inner, ".")
	return name
}
