package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// The DynamoDB engine's table layout, access patterns and atomicity are
// described in the package doc (doc.go).

// dynamoTimeLayout sorts as text in time order.
const dynamoTimeLayout = "2006-01-02T15:04:05.000000Z"

// Partitions (pk values) and fixed sort keys.
const (
	partMeta       = "meta"
	partCounter    = "counter"
	partRunner     = "runner"
	partHistory    = "history#"
	partEgg        = "egg"
	partPolicy     = "policy"
	partJob        = "job"
	partAudit      = "audit"
	partAuditKey   = "audit-key"
	partDelivery   = "delivery"
	partOutbox     = "outbox"
	partOutboxDone = "outbox-done"

	skSchema = "schema"
)

// dynamoSchemaVersion is the layout above; a table written by a newer
// layout is refused, as the SQL engines refuse a newer schema.
const dynamoSchemaVersion = 1

// dynamoStore implements Store on one DynamoDB table.
type dynamoStore struct {
	client *dynamodb.Client
	table  string
	// engine names the service in errors: "dynamodb" or "ydb".
	engine string
	// hint is appended to permission errors: what the engine needs.
	hint string
	// endpoint names where the service is, for errors.
	endpoint string

	closers   []func() error
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// errClosed is returned by every call on a closed store.
var errClosed = errors.New("the store is closed")

func (s *dynamoStore) check() error {
	if s.closed.Load() {
		return errClosed
	}
	return nil
}

// expr collects the placeholders of one request's expressions: every
// attribute name goes through #names (so reserved words such as state and
// name need no thought) and every value through :values.
type expr struct {
	names  map[string]string
	values map[string]types.AttributeValue
}

func (e *expr) n(attr string) string {
	if e.names == nil {
		e.names = map[string]string{}
	}
	for k, v := range e.names {
		if v == attr {
			return k
		}
	}
	k := "#n" + strconv.Itoa(len(e.names))
	e.names[k] = attr
	return k
}

func (e *expr) v(val types.AttributeValue) string {
	if e.values == nil {
		e.values = map[string]types.AttributeValue{}
	}
	k := ":v" + strconv.Itoa(len(e.values))
	e.values[k] = val
	return k
}

// cond is "a = :v" and the like.
func (e *expr) cond(attr, op string, val types.AttributeValue) string {
	return e.n(attr) + " " + op + " " + e.v(val)
}

func (e *expr) exists(attr string) string    { return "attribute_exists(" + e.n(attr) + ")" }
func (e *expr) notExists(attr string) string { return "attribute_not_exists(" + e.n(attr) + ")" }

// update builds an UpdateExpression from SET and REMOVE clauses.
type update struct {
	*expr
	set, remove, add []string
}

func newUpdate() *update { return &update{expr: &expr{}} }

func (u *update) setv(attr string, val types.AttributeValue) {
	u.set = append(u.set, u.n(attr)+" = "+u.v(val))
}

// setTime sets a time, or removes it when it is nil.
func (u *update) setTime(attr string, t *time.Time) {
	if t == nil {
		u.remove = append(u.remove, u.n(attr))
		return
	}
	u.setv(attr, avTime(*t))
}

func (u *update) String() string {
	var parts []string
	if len(u.set) > 0 {
		parts = append(parts, "SET "+strings.Join(u.set, ", "))
	}
	if len(u.remove) > 0 {
		parts = append(parts, "REMOVE "+strings.Join(u.remove, ", "))
	}
	if len(u.add) > 0 {
		parts = append(parts, "ADD "+strings.Join(u.add, ", "))
	}
	return strings.Join(parts, " ")
}

func avS(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
func avN(v int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
}
func avTime(t time.Time) types.AttributeValue { return avS(storedTime(t).Format(dynamoTimeLayout)) }

func key(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"pk": avS(pk), "sk": avS(sk)}
}

// seqKey is a non-negative number as a sort key that sorts numerically.
func seqKey(n int64) string { return fmt.Sprintf("%020d", n) }

// jobKey sorts jobs by ID (any int64, shifted to unsigned), then host.
func jobKey(jobID int64, host string) string { return jobIDKey(jobID) + "#" + host }

func jobIDKey(jobID int64) string { return fmt.Sprintf("%020d", uint64(jobID)^(1<<63)) }

// item reads attributes; the first malformed one is kept in err.
type item struct {
	m   map[string]types.AttributeValue
	err error
}

func (it *item) fail(attr string, err error) {
	if it.err == nil {
		it.err = fmt.Errorf("attribute %s: %w", attr, err)
	}
}

func (it *item) has(attr string) bool {
	_, ok := it.m[attr]
	return ok
}

func (it *item) str(attr string) string {
	switch v := it.m[attr].(type) {
	case nil:
		return ""
	case *types.AttributeValueMemberS:
		return v.Value
	default:
		it.fail(attr, fmt.Errorf("want a string, got %T", v))
		return ""
	}
}

func (it *item) int(attr string) int64 {
	switch v := it.m[attr].(type) {
	case nil:
		return 0
	case *types.AttributeValueMemberN:
		n, err := strconv.ParseInt(v.Value, 10, 64)
		if err != nil {
			it.fail(attr, err)
		}
		return n
	default:
		it.fail(attr, fmt.Errorf("want a number, got %T", v))
		return 0
	}
}

func (it *item) timePtr(attr string) *time.Time {
	s := it.str(attr)
	if s == "" {
		return nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		it.fail(attr, err)
		return nil
	}
	t = t.UTC()
	return &t
}

func (it *item) time(attr string) time.Time {
	if t := it.timePtr(attr); t != nil {
		return *t
	}
	return time.Time{}
}

// json reads a JSON document; an absent one is nil.
func (it *item) json(attr string) json.RawMessage {
	if !it.has(attr) {
		return nil
	}
	return json.RawMessage(it.str(attr))
}

// seq reads a sort key written by seqKey.
func (it *item) seq() int64 {
	n, err := strconv.ParseInt(it.str("sk"), 10, 64)
	if err != nil {
		it.fail("sk", err)
	}
	return n
}

// isConditionFailed tells whether a write was refused by its condition.
func isConditionFailed(err error) bool {
	var ccf *types.ConditionalCheckFailedException
	return errors.As(err, &ccf)
}

// Low-level calls: each maps the service's errors through s.apiErr.

func (s *dynamoStore) getItem(ctx context.Context, pk, sk string) (*item, error) {
	out, err := s.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: &s.table, Key: key(pk, sk), ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, s.apiErr(err)
	}
	if out.Item == nil {
		return nil, ErrNotFound
	}
	return &item{m: out.Item}, nil
}

// putItem writes a whole item; condition may be empty.
func (s *dynamoStore) putItem(ctx context.Context, m map[string]types.AttributeValue, e *expr, condition string) error {
	in := &dynamodb.PutItemInput{TableName: &s.table, Item: m}
	if condition != "" {
		in.ConditionExpression = &condition
		in.ExpressionAttributeNames, in.ExpressionAttributeValues = e.names, e.values
	}
	_, err := s.client.PutItem(ctx, in)
	return s.apiErr(err)
}

// updateItem applies u; it returns the item as it is afterwards.
func (s *dynamoStore) updateItem(ctx context.Context, pk, sk string, u *update, condition string) (*item, error) {
	in := &dynamodb.UpdateItemInput{
		TableName: &s.table, Key: key(pk, sk), UpdateExpression: aws.String(u.String()),
		ExpressionAttributeNames: u.names, ExpressionAttributeValues: u.values,
		ReturnValues: types.ReturnValueAllNew,
	}
	if condition != "" {
		in.ConditionExpression = &condition
	}
	out, err := s.client.UpdateItem(ctx, in)
	if err != nil {
		return nil, s.apiErr(err)
	}
	return &item{m: out.Attributes}, nil
}

// deleteItem deletes an item; condition may be empty. deleted is false
// when the condition refused the delete.
func (s *dynamoStore) deleteItem(ctx context.Context, pk, sk string, e *expr, condition string) (deleted bool, err error) {
	in := &dynamodb.DeleteItemInput{TableName: &s.table, Key: key(pk, sk)}
	if condition != "" {
		in.ConditionExpression = &condition
		in.ExpressionAttributeNames, in.ExpressionAttributeValues = e.names, e.values
	}
	_, err = s.client.DeleteItem(ctx, in)
	if isConditionFailed(err) {
		return false, nil
	}
	if err != nil {
		return false, s.apiErr(err)
	}
	return true, nil
}

// query describes a Query on one partition.
type query struct {
	pk string
	e  *expr
	// skCond compares the sort key ("sk > :v"), built with e; empty for
	// the whole partition.
	skCond string
	// filter is a FilterExpression built with e; empty for none.
	filter   string
	backward bool
	// project lists the attributes to read (all when empty).
	project []string
	// pageLimit bounds the items one page reads; set it only when there is
	// no filter, since DynamoDB applies it before filtering.
	pageLimit int
}

// query calls each for the partition's items in sort-key order until each
// says stop or the partition ends, following LastEvaluatedKey.
func (s *dynamoStore) query(ctx context.Context, q query, each func(*item) (more bool, err error)) error {
	e := q.e
	if e == nil {
		e = &expr{}
	}
	keyCond := e.cond("pk", "=", avS(q.pk))
	if q.skCond != "" {
		keyCond += " AND " + q.skCond
	}
	in := &dynamodb.QueryInput{
		TableName: &s.table, KeyConditionExpression: &keyCond, ConsistentRead: aws.Bool(true),
		ScanIndexForward: aws.Bool(!q.backward),
	}
	if q.filter != "" {
		in.FilterExpression = &q.filter
	}
	if len(q.project) > 0 {
		var names []string
		for _, a := range q.project {
			names = append(names, e.n(a))
		}
		in.ProjectionExpression = aws.String(strings.Join(names, ", "))
	}
	if q.pageLimit > 0 {
		in.Limit = aws.Int32(int32(min(q.pageLimit, 1000)))
	}
	in.ExpressionAttributeNames, in.ExpressionAttributeValues = e.names, e.values
	for {
		out, err := s.client.Query(ctx, in)
		if err != nil {
			return s.apiErr(err)
		}
		for _, m := range out.Items {
			more, err := each(&item{m: m})
			if err != nil {
				return err
			}
			if !more {
				return nil
			}
		}
		if len(out.LastEvaluatedKey) == 0 {
			return nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

// collect is a query callback that appends decoded records to out, up to
// limit (0: no bound).
func collect[T any](out *[]T, limit int, decode func(*item) (T, error)) func(*item) (bool, error) {
	return func(it *item) (bool, error) {
		v, err := decode(it)
		if err != nil {
			return false, err
		}
		*out = append(*out, v)
		return limit <= 0 || len(*out) < limit, nil
	}
}

// nextID takes the next number of a counter: 1, 2, 3, ...
func (s *dynamoStore) nextID(ctx context.Context, counter string) (int64, error) {
	u := newUpdate()
	u.add = append(u.add, u.n("n")+" "+u.v(avN(1)))
	it, err := s.updateItem(ctx, partCounter, counter, u, "")
	if err != nil {
		return 0, fmt.Errorf("take the next %s ID: %w", counter, err)
	}
	id := it.int("n")
	if it.err != nil {
		return 0, fmt.Errorf("take the next %s ID: %w", counter, it.err)
	}
	return id, nil
}

// runnerRecord is a runner with its last transition.
type runnerRecord struct {
	Runner
	// seq numbers the runner's transitions; last is the seq-th, nil when
	// there was none.
	seq  int64
	last *Transition
}

func decodeRunner(it *item) (*runnerRecord, error) {
	rec := &runnerRecord{Runner: Runner{
		ID: it.str("sk"), Egg: it.str("egg"), Cloud: it.str("cloud"), Kind: it.str("kind"),
		State: RunnerState(it.str("state")), GitLabHost: it.str("gitlab_host"),
		GitLabRunnerID: it.int("gitlab_runner_id"), TokenRef: it.str("token_ref"),
		Workspace: it.str("workspace"), WorkflowID: it.str("workflow_id"), JobID: it.int("job_id"),
		Reason: it.str("reason"), Failures: int(it.int("failures")),
		LastHeartbeat: it.timePtr("last_heartbeat"), LastJobAt: it.timePtr("last_job_at"),
		CreatedAt: it.time("created_at"), UpdatedAt: it.time("updated_at"), Version: it.int("version"),
	}}
	rec.seq = it.int("transitions")
	if m, ok := it.m["last_transition"].(*types.AttributeValueMemberM); ok {
		t := decodeTransition(&item{m: m.Value}, rec.ID)
		rec.last = &t
	}
	if it.err != nil {
		return nil, fmt.Errorf("decode runner %s: %w", rec.ID, it.err)
	}
	return rec, nil
}

func transitionAttrs(t Transition) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		"from": avS(string(t.From)), "to": avS(string(t.To)), "reason": avS(t.Reason),
		"actor": avS(t.Actor), "at": avTime(t.At),
	}
}

func decodeTransition(it *item, runnerID string) Transition {
	return Transition{
		RunnerID: runnerID, From: RunnerState(it.str("from")), To: RunnerState(it.str("to")),
		Reason: it.str("reason"), Actor: it.str("actor"), At: it.time("at"),
	}
}

func (s *dynamoStore) CreateRunner(ctx context.Context, r *Runner) error {
	if err := s.check(); err != nil {
		return err
	}
	if r.ID == "" {
		return errors.New("create runner: empty ID")
	}
	state := r.State
	if state == "" {
		state = StateProvisioning
	}
	if !state.Valid() {
		return fmt.Errorf("create runner %s: unknown state %q", r.ID, state)
	}
	now := storedTime(time.Now())
	created, updated := now, now
	if !r.CreatedAt.IsZero() {
		created = storedTime(r.CreatedAt)
	}
	if !r.UpdatedAt.IsZero() {
		updated = storedTime(r.UpdatedAt)
	}
	m := map[string]types.AttributeValue{
		"pk": avS(partRunner), "sk": avS(r.ID), "state": avS(string(state)),
		"created_at": avTime(created), "updated_at": avTime(updated), "version": avN(1), "transitions": avN(0),
	}
	for k, v := range runnerFields(r) {
		m[k] = v
	}
	e := &expr{}
	err := s.putItem(ctx, m, e, e.notExists("pk"))
	if isConditionFailed(err) {
		return fmt.Errorf("create runner %s: %w", r.ID, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("create runner %s: %w", r.ID, err)
	}
	r.State = state
	r.CreatedAt, r.UpdatedAt = created, updated
	r.LastHeartbeat = storedTimePtr(r.LastHeartbeat)
	r.LastJobAt = storedTimePtr(r.LastJobAt)
	r.Version = 1
	return nil
}

// runnerFields are the attributes UpdateRunner writes: every field but the
// identity, the state, the times the store sets and the version. Nil times
// are absent.
func runnerFields(r *Runner) map[string]types.AttributeValue {
	m := map[string]types.AttributeValue{
		"egg": avS(r.Egg), "cloud": avS(r.Cloud), "kind": avS(r.Kind), "gitlab_host": avS(r.GitLabHost),
		"gitlab_runner_id": avN(r.GitLabRunnerID), "token_ref": avS(r.TokenRef), "workspace": avS(r.Workspace),
		"workflow_id": avS(r.WorkflowID), "job_id": avN(r.JobID), "reason": avS(r.Reason),
		"failures": avN(int64(r.Failures)),
	}
	if r.LastHeartbeat != nil {
		m["last_heartbeat"] = avTime(*r.LastHeartbeat)
	}
	if r.LastJobAt != nil {
		m["last_job_at"] = avTime(*r.LastJobAt)
	}
	return m
}

// setRunnerFields adds runnerFields to u, removing nil times. Without
// heartbeat the last heartbeat is left as stored.
func setRunnerFields(u *update, r *Runner, heartbeat bool) {
	fields := runnerFields(r)
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		if k == "last_heartbeat" || k == "last_job_at" {
			continue
		}
		u.setv(k, fields[k])
	}
	if heartbeat {
		u.setTime("last_heartbeat", r.LastHeartbeat)
	}
	u.setTime("last_job_at", r.LastJobAt)
}

func (s *dynamoStore) GetRunner(ctx context.Context, id string) (*Runner, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	rec, err := s.getRunner(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("get runner %s: %w", id, err)
	}
	return &rec.Runner, nil
}

// getRunner reads one runner; ErrNotFound (unwrapped) when it is missing.
func (s *dynamoStore) getRunner(ctx context.Context, id string) (*runnerRecord, error) {
	if id == "" {
		return nil, ErrNotFound
	}
	it, err := s.getItem(ctx, partRunner, id)
	if err != nil {
		return nil, err
	}
	return decodeRunner(it)
}

func (s *dynamoStore) ListRunners(ctx context.Context, f RunnerFilter) ([]Runner, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	q := query{pk: partRunner, e: &expr{}}
	var filters []string
	if f.Egg != "" {
		filters = append(filters, q.e.cond("egg", "=", avS(f.Egg)))
	}
	if f.Cloud != "" {
		filters = append(filters, q.e.cond("cloud", "=", avS(f.Cloud)))
	}
	if f.GitLabHost != "" {
		filters = append(filters, q.e.cond("gitlab_host", "=", avS(f.GitLabHost)))
	}
	if f.GitLabRunnerID != 0 {
		filters = append(filters, q.e.cond("gitlab_runner_id", "=", avN(f.GitLabRunnerID)))
	}
	if len(f.States) > 0 {
		var vals []string
		for _, st := range f.States {
			vals = append(vals, q.e.v(avS(string(st))))
		}
		filters = append(filters, q.e.n("state")+" IN ("+strings.Join(vals, ", ")+")")
	}
	if f.After != "" {
		q.skCond = q.e.cond("sk", ">", avS(f.After))
	}
	q.filter = strings.Join(filters, " AND ")
	if q.filter == "" {
		q.pageLimit = f.Limit
	}
	var out []Runner
	err := s.query(ctx, q, collect(&out, f.Limit, func(it *item) (Runner, error) {
		rec, err := decodeRunner(it)
		if err != nil {
			return Runner{}, err
		}
		return rec.Runner, nil
	}))
	if err != nil {
		return nil, fmt.Errorf("list runners: %w", err)
	}
	return out, nil
}

func (s *dynamoStore) UpdateRunner(ctx context.Context, r *Runner) error {
	if err := s.check(); err != nil {
		return err
	}
	if r.ID == "" {
		return fmt.Errorf("update runner: %w", ErrNotFound)
	}
	u := newUpdate()
	setRunnerFields(u, r, true)
	u.setv("updated_at", avTime(time.Now()))
	u.set = append(u.set, u.n("version")+" = "+u.n("version")+" + "+u.v(avN(1)))
	it, err := s.updateItem(ctx, partRunner, r.ID, u, u.cond("version", "=", avN(r.Version)))
	if isConditionFailed(err) {
		return fmt.Errorf("update runner %s: %w", r.ID, s.missingOrConflict(ctx, r.ID, r.Version))
	}
	if err != nil {
		return fmt.Errorf("update runner %s: %w", r.ID, err)
	}
	rec, err := decodeRunner(it)
	if err != nil {
		return fmt.Errorf("update runner %s: %w", r.ID, err)
	}
	*r = rec.Runner
	return nil
}

// missingOrConflict explains why a versioned update was refused.
func (s *dynamoStore) missingOrConflict(ctx context.Context, id string, readVersion int64) error {
	rec, err := s.getRunner(ctx, id)
	if err != nil {
		return err
	}
	return fmt.Errorf("%w (read version %d, stored version %d)", ErrConflict, readVersion, rec.Version)
}

func (s *dynamoStore) RecordHeartbeat(ctx context.Context, id string, at time.Time) error {
	if err := s.check(); err != nil {
		return err
	}
	if id == "" {
		return fmt.Errorf("record heartbeat of runner %s: %w", id, ErrNotFound)
	}
	u := newUpdate()
	u.setv("last_heartbeat", avTime(at))
	_, err := s.updateItem(ctx, partRunner, id, u, u.exists("pk"))
	if isConditionFailed(err) {
		return fmt.Errorf("record heartbeat of runner %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("record heartbeat of runner %s: %w", id, err)
	}
	return nil
}

func (s *dynamoStore) Transition(ctx context.Context, req TransitionRequest) (*Runner, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	r, err := s.transition(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("transition runner %s to %s: %w", req.RunnerID, req.To, err)
	}
	return r, nil
}

func (s *dynamoStore) transition(ctx context.Context, req TransitionRequest) (*Runner, error) {
	cur, err := s.getRunner(ctx, req.RunnerID)
	if err != nil {
		return nil, err
	}
	if req.Version != 0 && req.Version != cur.Version {
		return nil, fmt.Errorf("%w (read version %d, stored version %d)", ErrConflict, req.Version, cur.Version)
	}
	if req.To == cur.State {
		return &cur.Runner, nil
	}
	if !CanTransition(cur.State, req.To) {
		return nil, IllegalTransitionError(cur.State, req.To)
	}
	next := cur.Runner
	if req.Update != nil {
		req.Update(&next)
	}
	// Update may touch any field; the identity, the lifecycle and the
	// version stay under the store's control.
	next.ID, next.CreatedAt = cur.ID, cur.CreatedAt
	next.State, next.Reason = req.To, req.Reason
	next.UpdatedAt = storedTime(time.Now())

	// The last transition leaves the runner's item below; copy it out
	// first. Writing the same record again is harmless.
	if cur.last != nil {
		m := transitionAttrs(*cur.last)
		m["pk"], m["sk"] = avS(partHistory+cur.ID), avS(seqKey(cur.seq))
		if err := s.putItem(ctx, m, nil, ""); err != nil {
			return nil, fmt.Errorf("record transition %d: %w", cur.seq, err)
		}
	}
	tr := Transition{RunnerID: cur.ID, From: cur.State, To: next.State, Reason: req.Reason, Actor: req.Actor, At: next.UpdatedAt}
	u := newUpdate()
	// A heartbeat recorded since the read must not be undone, so the last
	// heartbeat is written only when Update changed it.
	setRunnerFields(u, &next, !sameTimePtr(next.LastHeartbeat, cur.LastHeartbeat))
	u.setv("state", avS(string(next.State)))
	u.setv("updated_at", avTime(next.UpdatedAt))
	u.setv("version", avN(cur.Version+1))
	u.setv("transitions", avN(cur.seq+1))
	u.setv("last_transition", &types.AttributeValueMemberM{Value: transitionAttrs(tr)})
	it, err := s.updateItem(ctx, partRunner, cur.ID, u, u.cond("version", "=", avN(cur.Version)))
	if isConditionFailed(err) {
		return nil, fmt.Errorf("%w (read version %d)", ErrConflict, cur.Version)
	}
	if err != nil {
		return nil, err
	}
	rec, err := decodeRunner(it)
	if err != nil {
		return nil, err
	}
	return &rec.Runner, nil
}

func sameTimePtr(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return storedTime(*a).Equal(storedTime(*b))
}

func (s *dynamoStore) RunnerHistory(ctx context.Context, id string) ([]Transition, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	// The runner first: its last transition is the newest one this call
	// reports, and every earlier one was copied out before it was written.
	rec, err := s.getRunner(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("runner history %s: %w", id, err)
	}
	if rec.last == nil {
		return nil, nil
	}
	q := query{pk: partHistory + id, e: &expr{}}
	q.skCond = q.e.cond("sk", "<", avS(seqKey(rec.seq)))
	var out []Transition
	err = s.query(ctx, q, collect(&out, 0, func(it *item) (Transition, error) {
		t := decodeTransition(it, id)
		return t, it.err
	}))
	if err != nil {
		return nil, fmt.Errorf("runner history %s: %w", id, err)
	}
	return append(out, *rec.last), nil
}

// putSpec upserts a named, versioned JSON document (egg configs, policies).
func (s *dynamoStore) putSpec(ctx context.Context, part, name, version string, spec json.RawMessage, updated time.Time) error {
	if name == "" {
		return errors.New("empty name")
	}
	if len(spec) > 0 && !json.Valid(spec) {
		return errors.New("spec is not valid JSON")
	}
	if updated.IsZero() {
		updated = time.Now()
	}
	m := map[string]types.AttributeValue{
		"pk": avS(part), "sk": avS(name), "version": avS(version), "updated_at": avTime(updated),
	}
	if len(spec) > 0 {
		m["spec"] = avS(string(spec))
	}
	return s.putItem(ctx, m, nil, "")
}

func decodeSpec(it *item) (specRow, error) {
	r := specRow{name: it.str("sk"), version: it.str("version"), spec: it.json("spec"), updatedAt: it.time("updated_at")}
	return r, it.err
}

func (s *dynamoStore) listSpecs(ctx context.Context, part string) ([]specRow, error) {
	var out []specRow
	err := s.query(ctx, query{pk: part}, collect(&out, 0, decodeSpec))
	return out, err
}

func (s *dynamoStore) PutEggConfig(ctx context.Context, c EggConfig) error {
	if err := s.check(); err != nil {
		return err
	}
	if err := s.putSpec(ctx, partEgg, c.Name, c.Version, c.Spec, c.UpdatedAt); err != nil {
		return fmt.Errorf("put egg config %s: %w", c.Name, err)
	}
	return nil
}

func (s *dynamoStore) GetEggConfig(ctx context.Context, name string) (*EggConfig, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if name == "" {
		return nil, fmt.Errorf("get egg config %s: %w", name, ErrNotFound)
	}
	it, err := s.getItem(ctx, partEgg, name)
	if err != nil {
		return nil, fmt.Errorf("get egg config %s: %w", name, err)
	}
	r, err := decodeSpec(it)
	if err != nil {
		return nil, fmt.Errorf("get egg config %s: %w", name, err)
	}
	return &EggConfig{Name: r.name, Version: r.version, Spec: r.spec, UpdatedAt: r.updatedAt}, nil
}

func (s *dynamoStore) ListEggConfigs(ctx context.Context) ([]EggConfig, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	rows, err := s.listSpecs(ctx, partEgg)
	if err != nil {
		return nil, fmt.Errorf("list egg configs: %w", err)
	}
	out := make([]EggConfig, 0, len(rows))
	for _, r := range rows {
		out = append(out, EggConfig{Name: r.name, Version: r.version, Spec: r.spec, UpdatedAt: r.updatedAt})
	}
	return out, nil
}

func (s *dynamoStore) PutPolicy(ctx context.Context, p Policy) error {
	if err := s.check(); err != nil {
		return err
	}
	if err := s.putSpec(ctx, partPolicy, p.Name, p.Version, p.Spec, p.UpdatedAt); err != nil {
		return fmt.Errorf("put policy %s: %w", p.Name, err)
	}
	return nil
}

func (s *dynamoStore) ListPolicies(ctx context.Context) ([]Policy, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	rows, err := s.listSpecs(ctx, partPolicy)
	if err != nil {
		return nil, fmt.Errorf("list policies: %w", err)
	}
	out := make([]Policy, 0, len(rows))
	for _, r := range rows {
		out = append(out, Policy{Name: r.name, Version: r.version, Spec: r.spec, UpdatedAt: r.updatedAt})
	}
	return out, nil
}

func decodeJob(it *item) (JobRecord, error) {
	j := JobRecord{
		GitLabHost: it.str("gitlab_host"), JobID: it.int("job_id"), ProjectID: it.int("project_id"),
		Egg: it.str("egg"), Name: it.str("name"), Ref: it.str("ref"), PipelineID: it.int("pipeline_id"),
		Status: it.str("status"), RunnerID: it.str("runner_id"),
		QueuedAt: it.timePtr("queued_at"), StartedAt: it.timePtr("started_at"), FinishedAt: it.timePtr("finished_at"),
		UpdatedAt: it.time("updated_at"),
	}
	if it.err != nil {
		return JobRecord{}, fmt.Errorf("decode job %s#%d: %w", j.GitLabHost, j.JobID, it.err)
	}
	return j, nil
}

func (s *dynamoStore) RecordJob(ctx context.Context, j JobRecord) (JobRecord, error) {
	if err := s.check(); err != nil {
		return JobRecord{}, err
	}
	if j.GitLabHost == "" || j.JobID == 0 {
		return JobRecord{}, fmt.Errorf("record job %s#%d: a job needs its GitLab host and job ID", j.GitLabHost, j.JobID)
	}
	if j.UpdatedAt.IsZero() {
		j.UpdatedAt = time.Now()
	}
	// Read, merge, and write back on the condition that nobody wrote in
	// between (the item's rev is the one read); a writer that lost the
	// race reads again and merges into the winner's record, after a short
	// random pause so that a burst of events about one job does not retry
	// in lockstep.
	sk := jobKey(j.JobID, j.GitLabHost)
	for attempt := range recordJobAttempts {
		if attempt > 0 {
			if err := conflictPause(ctx, attempt); err != nil {
				return JobRecord{}, fmt.Errorf("record job %s#%d: %w", j.GitLabHost, j.JobID, err)
			}
		}
		it, err := s.getItem(ctx, partJob, sk)
		var (
			stored *JobRecord
			rev    int64
			e      = &expr{}
			cond   string
		)
		switch {
		case errors.Is(err, ErrNotFound):
			cond = e.notExists("pk")
		case err != nil:
			return JobRecord{}, fmt.Errorf("record job %s#%d: %w", j.GitLabHost, j.JobID, err)
		default:
			cur, err := decodeJob(it)
			if err != nil {
				return JobRecord{}, fmt.Errorf("record job %s#%d: %w", j.GitLabHost, j.JobID, err)
			}
			stored, rev = &cur, it.int("rev")
			if it.has("rev") {
				cond = e.cond("rev", "=", avN(rev))
			} else {
				cond = e.notExists("rev") // written before revs were kept
			}
		}
		out := MergeJob(stored, j)
		if stored != nil && sameJobRecord(out, *stored) {
			return out, nil
		}
		err = s.putItem(ctx, jobItem(out, sk, rev+1), e, cond)
		if isConditionFailed(err) {
			continue
		}
		if err != nil {
			return JobRecord{}, fmt.Errorf("record job %s#%d: %w", j.GitLabHost, j.JobID, err)
		}
		return out, nil
	}
	return JobRecord{}, fmt.Errorf("record job %s#%d: %w", j.GitLabHost, j.JobID, ErrConflict)
}

// recordJobAttempts bounds RecordJob's read-merge-write rounds.
const recordJobAttempts = 16

// conflictPause waits before retry number attempt of a conditional write
// that lost a race: a random time up to 5 ms doubled per attempt, at most
// 200 ms, or until ctx ends.
func conflictPause(ctx context.Context, attempt int) error {
	ceiling := min(5*time.Millisecond<<min(attempt, 6), 200*time.Millisecond)
	t := time.NewTimer(rand.N(ceiling) + time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// jobItem is a job's whole item; rev counts its writes.
func jobItem(j JobRecord, sk string, rev int64) map[string]types.AttributeValue {
	m := map[string]types.AttributeValue{
		"pk": avS(partJob), "sk": avS(sk), "rev": avN(rev),
		"gitlab_host": avS(j.GitLabHost), "job_id": avN(j.JobID), "project_id": avN(j.ProjectID),
		"egg": avS(j.Egg), "name": avS(j.Name), "ref": avS(j.Ref), "pipeline_id": avN(j.PipelineID),
		"status": avS(j.Status), "runner_id": avS(j.RunnerID), "updated_at": avTime(j.UpdatedAt),
	}
	for attr, t := range map[string]*time.Time{"queued_at": j.QueuedAt, "started_at": j.StartedAt, "finished_at": j.FinishedAt} {
		if t != nil {
			m[attr] = avTime(*t)
		}
	}
	return m
}

func (s *dynamoStore) GetJob(ctx context.Context, host string, jobID int64) (*JobRecord, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	it, err := s.getItem(ctx, partJob, jobKey(jobID, host))
	if err != nil {
		return nil, fmt.Errorf("get job %s#%d: %w", host, jobID, err)
	}
	j, err := decodeJob(it)
	if err != nil {
		return nil, fmt.Errorf("get job %s#%d: %w", host, jobID, err)
	}
	return &j, nil
}

func (s *dynamoStore) ListJobs(ctx context.Context, f JobFilter) ([]JobRecord, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	q := query{pk: partJob, e: &expr{}, backward: true}
	var filters []string
	if f.Egg != "" {
		filters = append(filters, q.e.cond("egg", "=", avS(f.Egg)))
	}
	if f.Status != "" {
		filters = append(filters, q.e.cond("status", "=", avS(f.Status)))
	}
	if f.BeforeJobID > 0 {
		q.skCond = q.e.cond("sk", "<", avS(jobIDKey(f.BeforeJobID)))
	}
	q.filter = strings.Join(filters, " AND ")
	// Newest job first, hosts of one job ID in byte order, as the SQL
	// engines list them. The sort key orders hosts backwards here, so the
	// last job ID of a page is read whole and reordered.
	var out []JobRecord
	err := s.query(ctx, q, func(it *item) (bool, error) {
		j, err := decodeJob(it)
		if err != nil {
			return false, err
		}
		if f.Limit > 0 && len(out) >= f.Limit && j.JobID != out[len(out)-1].JobID {
			return false, nil
		}
		out = append(out, j)
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	slices.SortStableFunc(out, func(a, b JobRecord) int {
		if a.JobID != b.JobID {
			if a.JobID > b.JobID {
				return -1
			}
			return 1
		}
		return strings.Compare(a.GitLabHost, b.GitLabHost)
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

func (s *dynamoStore) AppendAudit(ctx context.Context, a AuditRecord) (int64, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	if a.Actor == "" || a.Action == "" {
		return 0, fmt.Errorf("append audit: a record needs an actor and an action (got actor %q, action %q)", a.Actor, a.Action)
	}
	for what, doc := range map[string]json.RawMessage{"before": a.Before, "after": a.After} {
		if len(doc) > 0 && !json.Valid(doc) {
			return 0, fmt.Errorf("append audit %s by %s: %s is not valid JSON", a.Action, a.Actor, what)
		}
	}
	if a.At.IsZero() {
		a.At = time.Now()
	}
	id, err := s.appendAudit(ctx, a)
	if err != nil {
		return 0, fmt.Errorf("append audit %s by %s: %w", a.Action, a.Actor, err)
	}
	return id, nil
}

func (s *dynamoStore) appendAudit(ctx context.Context, a AuditRecord) (int64, error) {
	if a.Key == "" {
		id, err := s.nextID(ctx, partAudit)
		if err != nil {
			return 0, err
		}
		return id, s.putAudit(ctx, id, a)
	}
	// The key is claimed once; whoever finds it claimed takes its ID.
	for {
		it, err := s.getItem(ctx, partAuditKey, a.Key)
		if err == nil {
			id := it.int("id")
			if it.err != nil {
				return 0, it.err
			}
			return id, s.putAudit(ctx, id, a)
		}
		if !errors.Is(err, ErrNotFound) {
			return 0, err
		}
		id, err := s.nextID(ctx, partAudit)
		if err != nil {
			return 0, err
		}
		e := &expr{}
		err = s.putItem(ctx, map[string]types.AttributeValue{"pk": avS(partAuditKey), "sk": avS(a.Key), "id": avN(id)}, e, e.notExists("pk"))
		if isConditionFailed(err) {
			continue // claimed by a concurrent append: read its ID
		}
		if err != nil {
			return 0, err
		}
		return id, s.putAudit(ctx, id, a)
	}
}

// putAudit writes record id unless it is there already: records never
// change, and a retry of a keyed append must not replace the first.
func (s *dynamoStore) putAudit(ctx context.Context, id int64, a AuditRecord) error {
	m := map[string]types.AttributeValue{
		"pk": avS(partAudit), "sk": avS(seqKey(id)), "at": avTime(a.At), "actor": avS(a.Actor),
		"action": avS(a.Action), "egg": avS(a.Egg), "runner_id": avS(a.RunnerID), "policy": avS(a.Policy),
		"reason": avS(a.Reason),
	}
	if len(a.Before) > 0 {
		m["before_json"] = avS(string(a.Before))
	}
	if len(a.After) > 0 {
		m["after_json"] = avS(string(a.After))
	}
	if a.Key != "" {
		m["dedupe_key"] = avS(a.Key)
	}
	e := &expr{}
	err := s.putItem(ctx, m, e, e.notExists("pk"))
	if isConditionFailed(err) {
		return nil
	}
	return err
}

func (s *dynamoStore) ListAudit(ctx context.Context, f AuditFilter) ([]AuditRecord, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	q := query{pk: partAudit, e: &expr{}}
	var filters []string
	if f.Egg != "" {
		filters = append(filters, q.e.cond("egg", "=", avS(f.Egg)))
	}
	if f.RunnerID != "" {
		filters = append(filters, q.e.cond("runner_id", "=", avS(f.RunnerID)))
	}
	if !f.Since.IsZero() {
		filters = append(filters, q.e.cond("at", ">=", avTime(f.Since)))
	}
	if f.AfterID > 0 {
		q.skCond = q.e.cond("sk", ">", avS(seqKey(f.AfterID)))
	}
	q.filter = strings.Join(filters, " AND ")
	if q.filter == "" {
		q.pageLimit = f.Limit
	}
	var out []AuditRecord
	err := s.query(ctx, q, collect(&out, f.Limit, func(it *item) (AuditRecord, error) {
		a := AuditRecord{
			ID: it.seq(), At: it.time("at"), Actor: it.str("actor"), Action: it.str("action"),
			Egg: it.str("egg"), RunnerID: it.str("runner_id"), Policy: it.str("policy"), Reason: it.str("reason"),
			Before: it.json("before_json"), After: it.json("after_json"),
		}
		return a, it.err
	}))
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	return out, nil
}

func (s *dynamoStore) ExpireAudit(ctx context.Context, before time.Time) (int64, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	if before.IsZero() {
		return 0, errors.New("expire audit: no cut-off time")
	}
	q := query{pk: partAudit, e: &expr{}, project: []string{"sk", "dedupe_key"}}
	q.filter = q.e.cond("at", "<", avTime(before))
	type old struct {
		sk, key string
		id      int64
	}
	var olds []old
	err := s.query(ctx, q, collect(&olds, 0, func(it *item) (old, error) {
		return old{sk: it.str("sk"), key: it.str("dedupe_key"), id: it.seq()}, it.err
	}))
	if err != nil {
		return 0, fmt.Errorf("expire audit before %s: %w", before.Format(time.RFC3339), err)
	}
	var n int64
	for _, o := range olds {
		// The key goes first: a key whose record is missing means a record
		// being written, never one expired.
		if o.key != "" {
			e := &expr{}
			if _, err := s.deleteItem(ctx, partAuditKey, o.key, e, e.cond("id", "=", avN(o.id))); err != nil {
				return n, fmt.Errorf("expire audit record %d: %w", o.id, err)
			}
		}
		e := &expr{}
		deleted, err := s.deleteItem(ctx, partAudit, o.sk, e, e.cond("at", "<", avTime(before)))
		if err != nil {
			return n, fmt.Errorf("expire audit record %d: %w", o.id, err)
		}
		if deleted {
			n++
		}
	}
	return n, nil
}

func (s *dynamoStore) CountRunners(ctx context.Context) (map[string]map[RunnerState]int, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	out := map[string]map[RunnerState]int{}
	err := s.query(ctx, query{pk: partRunner, project: []string{"egg", "state"}}, func(it *item) (bool, error) {
		egg, state := it.str("egg"), RunnerState(it.str("state"))
		if it.err != nil {
			return false, it.err
		}
		if out[egg] == nil {
			out[egg] = map[RunnerState]int{}
		}
		out[egg][state]++
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("count runners: %w", err)
	}
	return out, nil
}

func (s *dynamoStore) RecordDelivery(ctx context.Context, deliveryKey string, at time.Time) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	if deliveryKey == "" {
		return false, errors.New("record delivery: empty key")
	}
	if at.IsZero() {
		at = time.Now()
	}
	// The condition settles races inside the service: of several
	// concurrent puts of one key exactly one succeeds.
	e := &expr{}
	err := s.putItem(ctx, map[string]types.AttributeValue{
		"pk": avS(partDelivery), "sk": avS(deliveryKey), "received_at": avTime(at),
	}, e, e.notExists("pk"))
	if isConditionFailed(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("record delivery: %w", err)
	}
	return true, nil
}

func (s *dynamoStore) ForgetDelivery(ctx context.Context, deliveryKey string) error {
	if err := s.check(); err != nil {
		return err
	}
	if deliveryKey == "" {
		return nil
	}
	if _, err := s.deleteItem(ctx, partDelivery, deliveryKey, nil, ""); err != nil {
		return fmt.Errorf("forget delivery: %w", err)
	}
	return nil
}

// prune deletes the items of a partition whose attr is before t and
// returns how many it deleted.
func (s *dynamoStore) prune(ctx context.Context, part, attr string, t time.Time) (int64, error) {
	q := query{pk: part, e: &expr{}, project: []string{"sk"}}
	q.filter = q.e.cond(attr, "<", avTime(t))
	var sks []string
	err := s.query(ctx, q, collect(&sks, 0, func(it *item) (string, error) { return it.str("sk"), it.err }))
	if err != nil {
		return 0, err
	}
	var n int64
	for _, sk := range sks {
		// The condition spares an item written again since the query.
		e := &expr{}
		deleted, err := s.deleteItem(ctx, part, sk, e, e.cond(attr, "<", avTime(t)))
		if err != nil {
			return n, err
		}
		if deleted {
			n++
		}
	}
	return n, nil
}

func (s *dynamoStore) PruneDeliveries(ctx context.Context, olderThan time.Time) (int64, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	n, err := s.prune(ctx, partDelivery, "received_at", olderThan)
	if err != nil {
		return n, fmt.Errorf("prune deliveries: %w", err)
	}
	return n, nil
}

func (s *dynamoStore) EnqueueOutbox(ctx context.Context, e OutboxEntry) (int64, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	if e.Kind == "" {
		return 0, errors.New("enqueue outbox: an entry needs a kind")
	}
	if len(e.Payload) == 0 || !json.Valid(e.Payload) {
		return 0, fmt.Errorf("enqueue outbox %s %s: the payload is not valid JSON", e.Kind, e.Key)
	}
	created := e.CreatedAt
	if created.IsZero() {
		created = time.Now()
	}
	next := e.NextAttemptAt
	if next.IsZero() {
		next = created
	}
	id, err := s.nextID(ctx, partOutbox)
	if err != nil {
		return 0, fmt.Errorf("enqueue outbox %s %s: %w", e.Kind, e.Key, err)
	}
	err = s.putItem(ctx, map[string]types.AttributeValue{
		"pk": avS(partOutbox), "sk": avS(seqKey(id)), "kind": avS(e.Kind), "entry_key": avS(e.Key),
		"payload": avS(string(e.Payload)), "created_at": avTime(created), "attempts": avN(0),
		"last_error": avS(""), "next_attempt_at": avTime(next),
	}, nil, "")
	if err != nil {
		return 0, fmt.Errorf("enqueue outbox %s %s: %w", e.Kind, e.Key, err)
	}
	return id, nil
}

func decodeOutbox(it *item) (OutboxEntry, error) {
	e := OutboxEntry{
		ID: it.seq(), Kind: it.str("kind"), Key: it.str("entry_key"), Payload: json.RawMessage(it.str("payload")),
		CreatedAt: it.time("created_at"), Attempts: int(it.int("attempts")), LastError: it.str("last_error"),
		NextAttemptAt: it.time("next_attempt_at"), DeliveredAt: it.timePtr("delivered_at"),
	}
	return e, it.err
}

func (s *dynamoStore) DueOutbox(ctx context.Context, now time.Time, limit int) ([]OutboxEntry, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	q := query{pk: partOutbox, e: &expr{}}
	q.filter = q.e.cond("next_attempt_at", "<=", avTime(now))
	var out []OutboxEntry
	if err := s.query(ctx, q, collect(&out, limit, decodeOutbox)); err != nil {
		return nil, fmt.Errorf("due outbox: %w", err)
	}
	return out, nil
}

func (s *dynamoStore) MarkOutboxDelivered(ctx context.Context, id int64, at time.Time) error {
	if err := s.check(); err != nil {
		return err
	}
	if at.IsZero() {
		at = time.Now()
	}
	if err := s.markDelivered(ctx, id, at); err != nil {
		return fmt.Errorf("mark outbox entry %d delivered: %w", id, err)
	}
	return nil
}

func (s *dynamoStore) markDelivered(ctx context.Context, id int64, at time.Time) error {
	if id <= 0 {
		return ErrNotFound
	}
	sk := seqKey(id)
	it, err := s.getItem(ctx, partOutbox, sk)
	if errors.Is(err, ErrNotFound) {
		// Delivered before: record the later delivery, as the SQL engines do.
		u := newUpdate()
		u.setv("delivered_at", avTime(at))
		_, err := s.updateItem(ctx, partOutboxDone, sk, u, u.exists("pk"))
		if isConditionFailed(err) {
			return ErrNotFound
		}
		return err
	}
	if err != nil {
		return err
	}
	done := it.m
	done["pk"], done["delivered_at"] = avS(partOutboxDone), avTime(at)
	if err := s.putItem(ctx, done, nil, ""); err != nil {
		return err
	}
	_, err = s.deleteItem(ctx, partOutbox, sk, nil, "")
	return err
}

func (s *dynamoStore) MarkOutboxFailed(ctx context.Context, id int64, errMsg string, next time.Time) error {
	if err := s.check(); err != nil {
		return err
	}
	if err := s.markFailed(ctx, id, errMsg, next); err != nil {
		return fmt.Errorf("mark outbox entry %d failed: %w", id, err)
	}
	return nil
}

func (s *dynamoStore) markFailed(ctx context.Context, id int64, errMsg string, next time.Time) error {
	if id <= 0 {
		return ErrNotFound
	}
	u := newUpdate()
	u.setv("last_error", avS(errMsg))
	u.setv("next_attempt_at", avTime(next))
	u.add = append(u.add, u.n("attempts")+" "+u.v(avN(1)))
	_, err := s.updateItem(ctx, partOutbox, seqKey(id), u, u.exists("pk"))
	if !isConditionFailed(err) {
		return err
	}
	// Not pending: a delivered entry has nothing left to retry.
	if _, err := s.getItem(ctx, partOutboxDone, seqKey(id)); err != nil {
		return err
	}
	return nil
}

func (s *dynamoStore) PruneOutbox(ctx context.Context, olderThan time.Time) (int64, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	n, err := s.prune(ctx, partOutboxDone, "delivered_at", olderThan)
	if err != nil {
		return n, fmt.Errorf("prune outbox: %w", err)
	}
	return n, nil
}

func (s *dynamoStore) OutboxDepth(ctx context.Context) (int64, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	var n int64
	err := s.query(ctx, query{pk: partOutbox, project: []string{"sk"}}, func(*item) (bool, error) {
		n++
		return true, nil
	})
	if err != nil {
		return 0, fmt.Errorf("outbox depth: %w", err)
	}
	return n, nil
}

func (s *dynamoStore) OutboxPending(ctx context.Context, entryKey string) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	q := query{pk: partOutbox, e: &expr{}, project: []string{"sk"}}
	q.filter = q.e.cond("entry_key", "=", avS(entryKey))
	found := false
	err := s.query(ctx, q, func(*item) (bool, error) {
		found = true
		return false, nil
	})
	if err != nil {
		return false, fmt.Errorf("outbox pending %s: %w", entryKey, err)
	}
	return found, nil
}

func (s *dynamoStore) Ping(ctx context.Context) error {
	if err := s.check(); err != nil {
		return fmt.Errorf("ping %s store: %w", s.engine, err)
	}
	if _, err := s.getItem(ctx, partMeta, skSchema); err != nil {
		return fmt.Errorf("ping %s store: %w", s.engine, err)
	}
	return nil
}

// Close releases the store; closing it again is harmless.
func (s *dynamoStore) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		var errs []error
		for _, closeFn := range s.closers {
			if err := closeFn(); err != nil {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			s.closeErr = fmt.Errorf("close %s store: %w", s.engine, err)
		}
	})
	return s.closeErr
}
