package lockboxtest

import (
	"context"
	"sort"

	"github.com/yandex-cloud/go-genproto/yandex/cloud/access"
	"github.com/yandex-cloud/go-genproto/yandex/cloud/lockbox/v1"
	"github.com/yandex-cloud/go-genproto/yandex/cloud/operation"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Lockbox is Yandex Cloud Lockbox's secrets, versions and payloads in
// memory, with Lockbox's rules: a new version is the base version (the
// current one unless named) with the changed entries replaced or added,
// and becomes current; secret names are unique in a folder. It is the one
// Lockbox stand-in: Server serves it alone, and bootstrap/yctest's Yandex
// Cloud serves it beside its other services (RegisterServices).
//
// A Lockbox is not safe for concurrent use: its Host serialises calls.
type Lockbox struct {
	host    Host
	secrets map[string]*secret
}

// secret is one Lockbox secret: its metadata (with CurrentVersion), every
// version, and each version's payload.
type secret struct {
	meta     *lockbox.Secret
	versions []*lockbox.Version
	payloads map[string][]*lockbox.Payload_Entry
}

// Host is the server a Lockbox is served from: it authenticates and
// serialises calls and owns the identifiers, operations and access
// bindings that Yandex Cloud's services share.
type Host interface {
	// Enter admits a call of method (the RPC's short name; the payload
	// service's Get is "PayloadGet") on secretID ("" for calls on a
	// folder): it authenticates the caller, applies faults, and takes the
	// lock that release gives back.
	Enter(ctx context.Context, method, secretID string) (release func(), err error)
	// NewID makes a resource ID with Yandex Cloud's prefix.
	NewID(prefix string) string
	// Operation answers a long-running operation whose change is made:
	// md is its metadata, resp its response.
	Operation(desc string, md, resp proto.Message) *operation.Operation
	// ListAccessBindings and UpdateAccessBindings serve a secret's access
	// bindings.
	ListAccessBindings(resource string) *access.ListAccessBindingsResponse
	UpdateAccessBindings(r *access.UpdateAccessBindingsRequest) (*operation.Operation, error)
}

// NewLockbox makes an empty Lockbox served from host.
func NewLockbox(host Host) *Lockbox {
	return &Lockbox{host: host, secrets: map[string]*secret{}}
}

// Put makes the secret with this ID in folder (Lockbox makes IDs; tests
// choose them), or finds it, and when entries is not nil adds them as its
// new current version. It returns the new version's ID ("" without
// entries). The caller holds the host's lock.
func (l *Lockbox) Put(folder, id, name string, entries map[string]string) string {
	sec := l.secrets[id]
	if sec == nil {
		sec = &secret{
			meta:     &lockbox.Secret{Id: id, FolderId: folder, CreatedAt: timestamppb.Now(), Name: name, Status: lockbox.Secret_ACTIVE},
			payloads: map[string][]*lockbox.Payload_Entry{},
		}
		l.secrets[id] = sec
	}
	if entries == nil {
		return "" // a secret with no version, as Lockbox makes it without a payload
	}
	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	changes := make([]*lockbox.PayloadEntryChange, 0, len(keys))
	for _, k := range keys {
		changes = append(changes, &lockbox.PayloadEntryChange{Key: k, Value: &lockbox.PayloadEntryChange_TextValue{TextValue: entries[k]}})
	}
	v, _ := l.addVersion(sec, "", "", changes)
	return v.GetId()
}

// Secret returns a copy of the secret with that ID, or nil. The caller
// holds the host's lock.
func (l *Lockbox) Secret(id string) *lockbox.Secret {
	if sec := l.secrets[id]; sec != nil {
		return proto.Clone(sec.meta).(*lockbox.Secret)
	}
	return nil
}

// Named returns a copy of the secret with that name, or nil. The caller
// holds the host's lock.
func (l *Lockbox) Named(name string) *lockbox.Secret {
	for _, sec := range l.secrets {
		if sec.meta.GetName() == name {
			return proto.Clone(sec.meta).(*lockbox.Secret)
		}
	}
	return nil
}

// Payload returns the entries of a version of a secret: NotFound, as
// Lockbox answers, when either is unknown. The caller holds the host's
// lock.
func (l *Lockbox) Payload(id, version string) ([]*lockbox.Payload_Entry, error) {
	sec := l.secrets[id]
	if sec == nil {
		return nil, status.Errorf(codes.NotFound, "Secret %s not found", id)
	}
	if version == "" {
		if sec.meta.CurrentVersion == nil {
			return nil, status.Errorf(codes.NotFound, "Secret %s has no version", id)
		}
		version = sec.meta.CurrentVersion.GetId()
	}
	entries, ok := sec.payloads[version]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "Version %q of secret %s not found", version, id)
	}
	out := make([]*lockbox.Payload_Entry, len(entries))
	for i, e := range entries {
		out[i] = proto.Clone(e).(*lockbox.Payload_Entry)
	}
	return out, nil
}

// addVersion applies changes to the base version (the current one when
// base is "") and makes the result the secret's current version.
func (l *Lockbox) addVersion(sec *secret, base, desc string, changes []*lockbox.PayloadEntryChange) (*lockbox.Version, error) {
	if base == "" && sec.meta.CurrentVersion != nil {
		base = sec.meta.CurrentVersion.GetId()
	}
	var entries []*lockbox.Payload_Entry
	if base != "" {
		prev, ok := sec.payloads[base]
		if !ok {
			return nil, status.Errorf(codes.NotFound, "Version %q of secret %s not found", base, sec.meta.GetId())
		}
		for _, e := range prev {
			entries = append(entries, proto.Clone(e).(*lockbox.Payload_Entry))
		}
	}
	for _, c := range changes {
		e := &lockbox.Payload_Entry{Key: c.GetKey()}
		if b := c.GetBinaryValue(); b != nil {
			e.Value = &lockbox.Payload_Entry_BinaryValue{BinaryValue: b}
		} else {
			e.Value = &lockbox.Payload_Entry_TextValue{TextValue: c.GetTextValue()}
		}
		replaced := false
		for i, old := range entries {
			if old.GetKey() == e.GetKey() {
				entries[i], replaced = e, true
			}
		}
		if !replaced {
			entries = append(entries, e)
		}
	}
	v := &lockbox.Version{
		Id: l.host.NewID("e6qv"), SecretId: sec.meta.GetId(), CreatedAt: timestamppb.Now(), Description: desc,
		Status: lockbox.Version_ACTIVE,
	}
	for _, e := range entries {
		v.PayloadEntryKeys = append(v.PayloadEntryKeys, e.GetKey())
	}
	sec.versions = append(sec.versions, v)
	sec.payloads[v.Id] = entries
	sec.meta.CurrentVersion = v
	return v, nil
}

// RegisterServices serves l's secret and payload services on reg.
func (l *Lockbox) RegisterServices(reg grpc.ServiceRegistrar) {
	lockbox.RegisterSecretServiceServer(reg, secretService{l: l})
	lockbox.RegisterPayloadServiceServer(reg, payloadService{l: l})
}

// find admits a call on a secret and finds it; release is set even when
// the secret is unknown (NotFound).
func (l *Lockbox) find(ctx context.Context, method, id string) (*secret, func(), error) {
	release, err := l.host.Enter(ctx, method, id)
	if err != nil {
		return nil, nil, err
	}
	sec := l.secrets[id]
	if sec == nil {
		release()
		return nil, nil, status.Errorf(codes.NotFound, "Secret %s not found", id)
	}
	return sec, release, nil
}

type secretService struct {
	lockbox.UnimplementedSecretServiceServer
	l *Lockbox
}

func (x secretService) Get(ctx context.Context, r *lockbox.GetSecretRequest) (*lockbox.Secret, error) {
	sec, release, err := x.l.find(ctx, "Get", r.GetSecretId())
	if err != nil {
		return nil, err
	}
	defer release()
	return proto.Clone(sec.meta).(*lockbox.Secret), nil
}

func (x secretService) List(ctx context.Context, r *lockbox.ListSecretsRequest) (*lockbox.ListSecretsResponse, error) {
	release, err := x.l.host.Enter(ctx, "List", "")
	if err != nil {
		return nil, err
	}
	defer release()
	out := &lockbox.ListSecretsResponse{}
	for _, sec := range x.l.secrets {
		if sec.meta.GetFolderId() == r.GetFolderId() {
			out.Secrets = append(out.Secrets, proto.Clone(sec.meta).(*lockbox.Secret))
		}
	}
	sort.Slice(out.Secrets, func(i, j int) bool { return out.Secrets[i].Id < out.Secrets[j].Id })
	return out, nil
}

func (x secretService) Create(ctx context.Context, r *lockbox.CreateSecretRequest) (*operation.Operation, error) {
	release, err := x.l.host.Enter(ctx, "Create", "")
	if err != nil {
		return nil, err
	}
	defer release()
	l := x.l
	for _, sec := range l.secrets {
		if sec.meta.GetFolderId() == r.GetFolderId() && sec.meta.GetName() == r.GetName() {
			return nil, status.Errorf(codes.AlreadyExists, "Secret with name %s already exists", r.GetName())
		}
	}
	sec := &secret{
		meta: &lockbox.Secret{Id: l.host.NewID("e6q"), FolderId: r.GetFolderId(), CreatedAt: timestamppb.Now(), Name: r.GetName(),
			Description: r.GetDescription(), Labels: r.GetLabels(), Status: lockbox.Secret_ACTIVE},
		payloads: map[string][]*lockbox.Payload_Entry{},
	}
	l.secrets[sec.meta.Id] = sec
	md := &lockbox.CreateSecretMetadata{SecretId: sec.meta.Id}
	if len(r.GetVersionPayloadEntries()) > 0 {
		v, err := l.addVersion(sec, "", r.GetVersionDescription(), r.GetVersionPayloadEntries())
		if err != nil {
			return nil, err
		}
		md.VersionId = v.Id
	}
	return l.host.Operation("Create secret", md, sec.meta), nil
}

func (x secretService) Update(ctx context.Context, r *lockbox.UpdateSecretRequest) (*operation.Operation, error) {
	sec, release, err := x.l.find(ctx, "Update", r.GetSecretId())
	if err != nil {
		return nil, err
	}
	defer release()
	for _, path := range r.GetUpdateMask().GetPaths() {
		switch path {
		case "name":
			sec.meta.Name = r.GetName()
		case "description":
			sec.meta.Description = r.GetDescription()
		case "labels":
			sec.meta.Labels = r.GetLabels()
		default:
			return nil, status.Errorf(codes.InvalidArgument, "update_mask: unknown field %s", path)
		}
	}
	return x.l.host.Operation("Update secret", &lockbox.UpdateSecretMetadata{SecretId: sec.meta.Id}, sec.meta), nil
}

func (x secretService) ListVersions(ctx context.Context, r *lockbox.ListVersionsRequest) (*lockbox.ListVersionsResponse, error) {
	sec, release, err := x.l.find(ctx, "ListVersions", r.GetSecretId())
	if err != nil {
		return nil, err
	}
	defer release()
	out := &lockbox.ListVersionsResponse{}
	for _, v := range sec.versions {
		out.Versions = append(out.Versions, proto.Clone(v).(*lockbox.Version))
	}
	return out, nil
}

// AddVersion applies the entry changes to the base version (the current
// one unless named), as Lockbox does, and answers the operation.
func (x secretService) AddVersion(ctx context.Context, r *lockbox.AddVersionRequest) (*operation.Operation, error) {
	sec, release, err := x.l.find(ctx, "AddVersion", r.GetSecretId())
	if err != nil {
		return nil, err
	}
	defer release()
	v, err := x.l.addVersion(sec, r.GetBaseVersionId(), r.GetDescription(), r.GetPayloadEntries())
	if err != nil {
		return nil, err
	}
	return x.l.host.Operation("Add version", &lockbox.AddVersionMetadata{SecretId: sec.meta.Id, VersionId: v.Id}, v), nil
}

func (x secretService) ListAccessBindings(ctx context.Context, r *access.ListAccessBindingsRequest) (*access.ListAccessBindingsResponse, error) {
	_, release, err := x.l.find(ctx, "ListAccessBindings", r.GetResourceId())
	if err != nil {
		return nil, err
	}
	defer release()
	return x.l.host.ListAccessBindings(r.GetResourceId()), nil
}

func (x secretService) UpdateAccessBindings(ctx context.Context, r *access.UpdateAccessBindingsRequest) (*operation.Operation, error) {
	_, release, err := x.l.find(ctx, "UpdateAccessBindings", r.GetResourceId())
	if err != nil {
		return nil, err
	}
	defer release()
	return x.l.host.UpdateAccessBindings(r)
}

type payloadService struct {
	lockbox.UnimplementedPayloadServiceServer
	l *Lockbox
}

func (p payloadService) Get(ctx context.Context, r *lockbox.GetPayloadRequest) (*lockbox.Payload, error) {
	sec, release, err := p.l.find(ctx, "PayloadGet", r.GetSecretId())
	if err != nil {
		return nil, err
	}
	defer release()
	v := r.GetVersionId()
	if v == "" && sec.meta.CurrentVersion != nil {
		v = sec.meta.CurrentVersion.GetId()
	}
	entries, err := p.l.Payload(r.GetSecretId(), v)
	if err != nil {
		return nil, err
	}
	return &lockbox.Payload{VersionId: v, Entries: entries}, nil
}
