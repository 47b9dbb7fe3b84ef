package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// putSpec upserts a named, versioned JSON document (egg configs, policies).
func (s *sqlStore) putSpec(ctx context.Context, table, name, version string, spec json.RawMessage, updated time.Time) error {
	if name == "" {
		return errors.New("empty name")
	}
	specArg, err := jsonArg("spec", spec)
	if err != nil {
		return err
	}
	if updated.IsZero() {
		updated = time.Now()
	}
	_, err = s.write.ExecContext(ctx, s.dialect.bind(`INSERT INTO `+table+` (name, version, spec, updated_at)
		VALUES (?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET version = excluded.version, spec = excluded.spec, updated_at = excluded.updated_at`),
		name, version, specArg, s.dialect.timeArg(updated))
	return err
}

// specRow is the shape shared by egg configs and policies.
type specRow struct {
	name, version string
	spec          json.RawMessage
	updatedAt     time.Time
}

func scanSpec(row rowScanner) (specRow, error) {
	var (
		r       specRow
		spec    sql.NullString
		updated dbTime
	)
	if err := row.Scan(&r.name, &r.version, &spec, &updated); err != nil {
		return specRow{}, err
	}
	r.spec = jsonValue(spec)
	r.updatedAt = updated.time
	return r, nil
}

func (s *sqlStore) listSpecs(ctx context.Context, table string) ([]specRow, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT name, version, spec, updated_at FROM `+table+` ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []specRow
	for rows.Next() {
		r, err := scanSpec(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func (s *sqlStore) PutEggConfig(ctx context.Context, c EggConfig) error {
	if err := s.putSpec(ctx, "egg_configs", c.Name, c.Version, c.Spec, c.UpdatedAt); err != nil {
		return fmt.Errorf("put egg config %s: %w", c.Name, err)
	}
	return nil
}

func (s *sqlStore) GetEggConfig(ctx context.Context, name string) (*EggConfig, error) {
	r, err := scanSpec(s.read.QueryRowContext(ctx, s.dialect.bind(`SELECT name, version, spec, updated_at
		FROM egg_configs WHERE name = ?`), name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("get egg config %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get egg config %s: %w", name, err)
	}
	return &EggConfig{Name: r.name, Version: r.version, Spec: r.spec, UpdatedAt: r.updatedAt}, nil
}

func (s *sqlStore) ListEggConfigs(ctx context.Context) ([]EggConfig, error) {
	rows, err := s.listSpecs(ctx, "egg_configs")
	if err != nil {
		return nil, fmt.Errorf("list egg configs: %w", err)
	}
	out := make([]EggConfig, 0, len(rows))
	for _, r := range rows {
		out = append(out, EggConfig{Name: r.name, Version: r.version, Spec: r.spec, UpdatedAt: r.updatedAt})
	}
	return out, nil
}

func (s *sqlStore) PutPolicy(ctx context.Context, p Policy) error {
	if err := s.putSpec(ctx, "policies", p.Name, p.Version, p.Spec, p.UpdatedAt); err != nil {
		return fmt.Errorf("put policy %s: %w", p.Name, err)
	}
	return nil
}

func (s *sqlStore) ListPolicies(ctx context.Context) ([]Policy, error) {
	rows, err := s.listSpecs(ctx, "policies")
	if err != nil {
		return nil, fmt.Errorf("list policies: %w", err)
	}
	out := make([]Policy, 0, len(rows))
	for _, r := range rows {
		out = append(out, Policy{Name: r.name, Version: r.version, Spec: r.spec, UpdatedAt: r.updatedAt})
	}
	return out, nil
}
