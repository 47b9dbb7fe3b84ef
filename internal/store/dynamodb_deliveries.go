package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

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
