package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

func (s *dynamoStore) AppendAudit(ctx context.Context, a AuditRecord) (int64, error) {
	if err := s.check(); err != nil {
		return 0, err
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
