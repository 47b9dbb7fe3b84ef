package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

func (s *sqlStore) RecordDelivery(ctx context.Context, key string, at time.Time) (bool, error) {
	if key == "" {
		return false, errors.New("record delivery: empty key")
	}
	if at.IsZero() {
		at = time.Now()
	}
	// ON CONFLICT DO NOTHING settles races inside the database: of several
	// concurrent inserts of one key exactly one affects a row.
	res, err := s.write.ExecContext(ctx, s.dialect.bind(`INSERT INTO webhook_deliveries (delivery_key, received_at)
		VALUES (?, ?) ON CONFLICT (delivery_key) DO NOTHING`), key, s.dialect.timeArg(at))
	if err != nil {
		return false, fmt.Errorf("record delivery: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("record delivery: %w", err)
	}
	return n == 1, nil
}

func (s *sqlStore) ForgetDelivery(ctx context.Context, key string) error {
	if _, err := s.write.ExecContext(ctx, s.dialect.bind(`DELETE FROM webhook_deliveries WHERE delivery_key = ?`), key); err != nil {
		return fmt.Errorf("forget delivery: %w", err)
	}
	return nil
}

func (s *sqlStore) PruneDeliveries(ctx context.Context, olderThan time.Time) (int64, error) {
	res, err := s.write.ExecContext(ctx, s.dialect.bind(`DELETE FROM webhook_deliveries WHERE received_at < ?`), s.dialect.timeArg(olderThan))
	if err != nil {
		return 0, fmt.Errorf("prune deliveries: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("prune deliveries: %w", err)
	}
	return n, nil
}
