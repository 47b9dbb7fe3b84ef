package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

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
