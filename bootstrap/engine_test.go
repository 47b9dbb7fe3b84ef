package bootstrap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The engine tests' resource kinds.
type (
	tService struct {
		Memory int    `json:"memory"`
		Count  int    `json:"count,omitempty"`
		Role   string `json:"role,omitempty"`
		Queue  string `json:"queue,omitempty"`
	}
	tRole struct {
		Policy struct {
			Actions []string `json:"actions"`
		} `json:"policy"`
	}
	tQueue struct {
		Visibility int `json:"visibility,omitempty"`
	}
	// tRef refers to another resource.
	tRef struct {
		R string `json:"r"`
	}
)

func (tService) isProps() {}
func (tRole) isProps()    {}
func (tQueue) isProps()   {}
func (tRef) isProps()     {}

func init() {
	propsKinds["t_service"], propsKinds["t_role"], propsKinds["t_queue"], propsKinds["a"] = tService{}, tRole{}, tQueue{}, tRef{}
}

// memProvider keeps resources in a map; fail names an address whose
// create or update fails.
type memProvider struct {
	items map[string]Resource
	fail  string
	seq   int
}

func (m *memProvider) Types() []string { return []string{"t_role", "t_queue", "t_service"} }

func (m *memProvider) Read(context.Context, []Resource) ([]Resource, error) {
	var out []Resource
	for _, r := range m.items {
		out = append(out, r.clone())
	}
	return out, nil
}

func (m *memProvider) Create(_ context.Context, r Resource) (Resource, error) {
	if r.Address() == m.fail {
		return r, errors.New("injected failure")
	}
	if _, ok := m.items[r.Address()]; ok {
		return r, errors.New("already exists")
	}
	m.seq++
	r.ID = fmt.Sprintf("id-%d", m.seq)
	r.Outputs = map[string]string{"id": r.ID}
	r.DependsOn = nil
	m.items[r.Address()] = r.clone()
	return r, nil
}

func (m *memProvider) Update(_ context.Context, before, after Resource) (Resource, error) {
	if after.Address() == m.fail {
		return after, errors.New("injected failure")
	}
	after.ID, after.Outputs, after.DependsOn = before.ID, before.Outputs, nil
	m.items[after.Address()] = after.clone()
	return after, nil
}

func (m *memProvider) Delete(_ context.Context, r Resource) error {
	if _, ok := m.items[r.Address()]; !ok {
		return errors.New("not found")
	}
	delete(m.items, r.Address())
	return nil
}

func desiredSet(memory int) []Resource {
	var role tRole
	role.Policy.Actions = []string{"sqs:SendMessage"}
	return []Resource{
		{Type: "t_service", Name: "api", Props: tService{Memory: memory, Role: Ref("t_role.api", "id"), Queue: Ref("t_queue.events", "id")}},
		{Type: "t_role", Name: "api", Props: role},
		{Type: "t_queue", Name: "events", Props: tQueue{Visibility: 300}},
	}
}

func TestEngineSequence(t *testing.T) {
	ctx := context.Background()
	mem := &memProvider{items: map[string]Resource{}}
	e := &Engine{Deployment: "test", Cloud: "mem", Providers: []Provider{mem},
		Journal: BlobJournal{FileBlob{filepath.Join(t.TempDir(), "journal")}}}

	p, actual, err := e.Plan(ctx, desiredSet(512))
	if err != nil {
		t.Fatal(err)
	}
	if p.Count(Create) != 3 || p.Changes[2].Address != "t_service.api" {
		t.Fatalf("first plan: %+v", p.Changes)
	}
	var text bytes.Buffer
	_ = p.WriteText(&text)
	if !strings.Contains(text.String(), `role   = (known after apply)`) || !strings.Contains(text.String(), "Plan: 3 to add, 0 to change, 0 to destroy.") {
		t.Errorf("plan text:\n%s", text.String())
	}
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := as[tService](mem.items["t_service.api"]).Role; got != mem.items["t_role.api"].ID {
		t.Errorf("reference resolved to %v", got)
	}

	p, _, _ = e.Plan(ctx, desiredSet(512))
	if !p.Empty() {
		t.Fatalf("second plan not empty: %+v", p.Changes)
	}

	p, actual, _ = e.Plan(ctx, desiredSet(1024))
	if len(p.Changes) != 1 || p.Changes[0].Action != Update || len(p.Changes[0].Fields) != 1 || p.Changes[0].Fields[0].Path != "memory" {
		t.Fatalf("memory change plan: %+v", p.Changes)
	}
	text.Reset()
	_ = p.WriteText(&text)
	if !strings.Contains(text.String(), "~ memory = 512 -> 1024") {
		t.Errorf("update text:\n%s", text.String())
	}
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}

	entries, _ := e.Journal.Entries(ctx)
	to, err := PreviousEntry(entries)
	if err != nil || to != 1 {
		t.Fatalf("previous entry %d, %v", to, err)
	}
	rp, actual, err := e.RollbackPlan(ctx, to)
	if err != nil {
		t.Fatal(err)
	}
	if len(rp.Changes) != 1 || rp.Changes[0].Action != Update {
		t.Fatalf("rollback plan: %+v", rp.Changes)
	}
	if _, err := e.Rollback(ctx, rp, actual, to, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := as[tService](mem.items["t_service.api"]).Memory; got != 512 {
		t.Errorf("memory after rollback: %v", got)
	}

	// A failure in the middle undoes what the deploy made before it.
	d := append(desiredSet(2048), Resource{Type: "t_queue", Name: "dlq", Props: tQueue{}},
		Resource{Type: "t_service", Name: "worker", Props: tService{Memory: 1}})
	mem.fail = "t_service.worker"
	p, actual, _ = e.Plan(ctx, d)
	_, err = e.Apply(ctx, p, actual, ApplyOptions{})
	var ae *ApplyError
	if !errors.As(err, &ae) || !ae.Undone || ae.Address != "t_service.worker" {
		t.Fatalf("failed apply: %v", err)
	}
	if _, ok := mem.items["t_queue.dlq"]; ok || as[tService](mem.items["t_service.api"]).Memory != 512 {
		t.Errorf("partial deploy left behind: %+v", mem.items)
	}
	// With --keep-partial it stays.
	p, actual, _ = e.Plan(ctx, d)
	if _, err = e.Apply(ctx, p, actual, ApplyOptions{KeepPartial: true}); err == nil {
		t.Fatal("no error")
	}
	if _, ok := mem.items["t_queue.dlq"]; !ok {
		t.Error("--keep-partial undid the deploy")
	}

	// Rolling back to before the first deploy removes everything.
	rp, actual, _ = e.RollbackPlan(ctx, 0)
	if _, err := e.Rollback(ctx, rp, actual, 0, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(mem.items) != 0 {
		t.Errorf("left after rollback to 0: %v", mem.items)
	}
}

func TestDiffCycle(t *testing.T) {
	_, err := Diff([]Resource{
		{Type: "a", Name: "x", Props: tRef{R: Ref("a.y", "id")}},
		{Type: "a", Name: "y", Props: tRef{R: Ref("a.x", "id")}},
	}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Fatalf("cycle: %v", err)
	}
}

// TestDiffCreateOnly: a create-only key is desired on creation, never
// diffed after, and an update for another key sends the value read.
func TestDiffCreateOnly(t *testing.T) {
	want := Resource{Type: "t_service", Name: "api", Props: tService{Count: 1, Memory: 512}, CreateOnly: []string{"count"}}
	p, err := Diff([]Resource{want}, nil, nil)
	if err != nil || len(p.Changes) != 1 || as[tService](*p.Changes[0].After).Count != 1 {
		t.Fatalf("create: %+v, %v", p, err)
	}
	have := Resource{Type: "t_service", Name: "api", Props: tService{Count: 4, Memory: 512}}
	if p, err = Diff([]Resource{want}, []Resource{have}, nil); err != nil || !p.Empty() {
		t.Fatalf("count moved by someone else: %+v, %v", p.Changes, err)
	}
	want.Props = tService{Count: 1, Memory: 1024}
	p, err = Diff([]Resource{want}, []Resource{have}, nil)
	if err != nil || len(p.Changes) != 1 || len(p.Changes[0].Fields) != 1 || p.Changes[0].Fields[0].Path != "memory" {
		t.Fatalf("memory change: %+v, %v", p.Changes, err)
	}
	if c := p.Changes[0]; as[tService](*c.After).Count != 4 || as[tService](*c.desired).Count != 4 {
		t.Fatalf("the update would send count %v (plan) / %v (apply), not the 4 read", as[tService](*c.After).Count, as[tService](*c.desired).Count)
	}
	// Without CreateOnly the count is the deploy's again.
	want.CreateOnly = nil
	if p, _ = Diff([]Resource{want}, []Resource{have}, nil); len(p.Changes) != 1 || len(p.Changes[0].Fields) != 2 {
		t.Fatalf("count owned by deploy: %+v", p.Changes)
	}
}

func TestEngineLock(t *testing.T) {
	ctx := context.Background()
	mem := &memProvider{items: map[string]Resource{}}
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	e := &Engine{Deployment: "test", Cloud: "mem", Providers: []Provider{mem}, Now: func() time.Time { return now },
		Journal: BlobJournal{FileBlob{filepath.Join(t.TempDir(), "journal")}}}
	// Another deploy is running (or died) half an hour ago.
	if err := e.Journal.Append(ctx, Entry{ID: 1, Time: now.Add(-30 * time.Minute), Kind: KindDeploy, Status: StatusRunning}); err != nil {
		t.Fatal(err)
	}
	p, actual, _ := e.Plan(ctx, desiredSet(512))
	_, err := e.Apply(ctx, p, actual, ApplyOptions{})
	var le *LockedError
	if !errors.As(err, &le) || len(mem.items) != 0 || !strings.Contains(err.Error(), "--force-unlock") {
		t.Fatalf("apply under a lock: %v (%d made)", err, len(mem.items))
	}
	entry, err := e.Apply(ctx, p, actual, ApplyOptions{ForceUnlock: true})
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := e.Journal.Entries(ctx)
	if len(entries) != 1 || entries[0].ID != 1 || entries[0].Status != StatusApplied || entry.ID != 1 {
		t.Errorf("journal after a forced unlock: %+v", entries)
	}
	// A lock older than LockTimeout is taken to be dead.
	_ = e.Journal.Append(ctx, Entry{ID: 2, Time: now.Add(-LockTimeout - time.Minute), Kind: KindDeploy, Status: StatusRunning})
	p, actual, _ = e.Plan(ctx, desiredSet(1024))
	if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
		t.Fatalf("apply after an expired lock: %v", err)
	}
}

// Plan text prints numbers as people write them.
func TestPlanValueNumbers(t *testing.T) {
	for in, want := range map[any]string{float64(134217728): "134217728", 0.25: "0.25", float64(-3): "-3", int64(7): "7"} {
		if got := value(in); got != want {
			t.Errorf("value(%v) = %s, want %s", in, got, want)
		}
	}
}
