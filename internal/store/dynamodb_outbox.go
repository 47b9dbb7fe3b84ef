package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

func (s *dynamoStore) EnqueueOutbox(ctx context.Context, e OutboxEntry) (int64, error) {
	if err := s.check(); err != nil {
		return 0, err
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
