package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

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

func (e *expr) exists(attr string) string { return "attribute_exists(" + e.n(attr) + ")" }

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

// avF is a float as DynamoDB's decimal number, in plain notation.
func avF(v float64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatFloat(v, 'f', -1, 64)}
}

func avTime(t time.Time) types.AttributeValue { return avS(storedTime(t).Format(dynamoTimeLayout)) }

func key(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"pk": avS(pk), "sk": avS(sk)}
}

// seqKey is a non-negative number as a sort key that sorts numerically.
func seqKey(n int64) string { return fmt.Sprintf("%020d", n) }

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

func (it *item) float(attr string) float64 {
	switch v := it.m[attr].(type) {
	case nil:
		return 0
	case *types.AttributeValueMemberN:
		f, err := strconv.ParseFloat(v.Value, 64)
		if err != nil {
			it.fail(attr, err)
		}
		return f
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
