package bootstrap

import (
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
			rev := mapOf(raw(r.Props), "revision")
			out = append(out, Call{Resource: addr, Kind: CallCommand, Component: r.Name, Args: strList(rev, "args"), Env: []string{"PORT=8080"}})
		case YCInstanceGroup:
			c := mapOf(mapOf(raw(r.Props), "instance"), "container")
			hc := mapOf(raw(r.Props), "health_check")
			out = append(out,
				Call{Resource: addr, Kind: CallCommand, Component: r.Name, Args: strList(c, "args")},
				Call{Resource: addr, Kind: CallHTTP, Component: r.Name, Method: "GET", Path: str(hc, "path"), Port: num(hc, "port"), Auth: AuthNone})
		case YCTrigger:
			// The trigger invokes the container as a service account: the
			// platform checks that, the container receives no credential.
			out = append(out, Call{Resource: addr, Kind: CallHTTP, Component: containerOfRef(r, str(raw(r.Props), "container_id")), Method: "POST", Path: str(raw(r.Props), "path"), Auth: AuthNone})
		case YCQueue, AWSQueue:
			out = append(out, Call{Resource: addr, Kind: CallQueue, Queue: str(raw(r.Props), "name")})
		case AWSSchedule:
			target := mapOf(raw(r.Props), "target")
			out = append(out, Call{Resource: addr, Kind: CallQueue, Queue: str(target, "arn")})
		case YCGateway:
			calls, err := gatewayCalls(r)
			if err != nil {
				return nil, err
			}
			out = append(out, calls...)
		case AWSService:
			out = append(out, Call{Resource: addr, Kind: CallCommand, Component: r.Name, Args: as[ServiceProps](r).Task.Command})
		case AWSFunction:
			out = append(out, Call{Resource: addr, Kind: CallCommand, Component: r.Name, Args: strList(raw(r.Props), "command")})
		case AWSRoute:
			key := str(raw(r.Props), "route_key")
			c := Call{Resource: addr, Kind: CallHTTP, Component: "api", Method: "ANY", Path: "/*", Auth: AuthPassThrough}
			if key != "$default" {
				method, path, _ := strings.Cut(key, " ")
				c.Method, c.Path = method, strings.Replace(path, "{proxy+}", "*", 1)
			}
			if str(raw(r.Props), "authorization_type") == "CUSTOM" {
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
	spec := mapOf(raw(r.Props), "openapi_spec")
	var out []Call
	paths := mapOf(spec, "paths")
	for _, path := range slices.Sorted(maps.Keys(paths)) {
		for method, op := range mapOf(paths, path) {
			o, _ := op.(map[string]any)
			integ := mapOf(o, "x-yc-apigateway-integration")
			if str(integ, "type") != "serverless_containers" {
				return nil, fmt.Errorf("%s: %s %s integrates with %q, which the contract does not know", r.Address(), method, path, str(integ, "type"))
			}
			m := strings.ToUpper(method)
			if method == "x-yc-apigateway-any-method" {
				m = "ANY"
			}
			c := Call{Resource: r.Address(), Kind: CallHTTP, Component: containerOfRef(r, str(integ, "container_id")), Method: m,
				Path: strings.Replace(path, "{proxy+}", "*", 1), Auth: AuthPassThrough}
			if sec, _ := o["security"].([]any); len(sec) > 0 {
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
