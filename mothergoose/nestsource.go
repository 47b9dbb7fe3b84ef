package mothergoose

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab"
)

// Limits of a Nest archive: a Nest is a few dozen small text files.
const (
	maxNestArchive = 32 << 20
	maxNestFile    = 4 << 20
)

// nestGitLab is the GitLab instance and token that reach the Nest
// repository: the nest block's host and token, else those of the eggs.
func nestGitLab(n *fly.Nest) (fly.GitLab, error) {
	src := n.MotherGoose.Nest
	host := src.Host
	if host == "" {
		for _, e := range n.Eggs {
			switch {
			case host == "":
				host = e.GitLab.Host
			case !strings.EqualFold(host, e.GitLab.Host):
				return fly.GitLab{}, errors.New("mothergoose.nest: the eggs use several GitLab hosts: set host (and token) in the nest block")
			}
		}
	}
	if host == "" {
		return fly.GitLab{}, errors.New("mothergoose.nest: no GitLab host: set host and token in the nest block")
	}
	g := fly.GitLab{Host: host, Token: src.Token}
	for _, e := range n.Eggs {
		if strings.EqualFold(e.GitLab.Host, host) {
			g.Insecure = e.GitLab.Insecure
			if g.Token.IsZero() {
				g.Token = e.GitLab.Token
			}
			break
		}
	}
	if g.Token.IsZero() {
		return fly.GitLab{}, fmt.Errorf("mothergoose.nest: no API token for %s: set token in the nest block", host)
	}
	return g, nil
}

func (m *NestSync) nestClient(ctx context.Context) (*gitlab.Client, string, error) {
	n := m.Nest()
	src := n.MotherGoose.Nest
	if src.Project == "" {
		return nil, "", errors.New("mothergoose.nest names no project")
	}
	g, err := nestGitLab(n)
	if err != nil {
		return nil, "", err
	}
	token, err := m.cache.get(ctx, g.Token)
	if err != nil {
		return nil, "", fmt.Errorf("the Nest repository's token: %w", err)
	}
	c, err := gitlab.New(g.BaseURL(), token, append([]gitlab.Option{gitlab.WithLogger(m.log)}, m.cfg.GitLabOptions...)...)
	return c, src.Project, err
}

// nestHead is the commit at the head of the Nest repository's ref.
func (m *NestSync) nestHead(ctx context.Context) (string, error) {
	c, project, err := m.nestClient(ctx)
	if err != nil {
		return "", err
	}
	ref := m.Nest().MotherGoose.Nest.Ref
	if ref == "" {
		ref = "main"
	}
	return c.ResolveRef(ctx, project, ref)
}

// FetchNestFromGitLab is the default NestFetcher: it downloads the Nest
// repository (mothergoose.nest.project) at ref through the GitLab API as a
// tar.gz archive (GET /projects/:id/repository/archive.tar.gz?sha=), with
// the nest block's token, unpacks it into a temporary directory and loads
// it as gosling validate does, with the variables the server was started
// with. A Nest with errors is an *InvalidNestError.
func (m *NestSync) FetchNestFromGitLab(ctx context.Context, ref string) (*fly.Nest, string, error) {
	c, project, err := m.nestClient(ctx)
	if err != nil {
		return nil, "", err
	}
	sha, err := c.ResolveRef(ctx, project, ref)
	if err != nil {
		return nil, "", err
	}
	archive, err := c.Archive(ctx, project, sha)
	if err != nil {
		return nil, "", err
	}
	dir, err := os.MkdirTemp("", "gosling-nest-")
	if err != nil {
		return nil, "", err
	}
	defer os.RemoveAll(dir)
	if err := untarNest(archive, dir); err != nil {
		return nil, "", fmt.Errorf("unpack the Nest at %s: %w", shortSHA(sha), err)
	}
	nest, diags := fly.LoadNest(dir, fly.Options{Vars: m.cfg.Vars, Getenv: m.cfg.Getenv})
	if diags.HasErrors() {
		var buf bytes.Buffer
		_ = fly.WriteText(&buf, diags.Diagnostics, diags.Files, false)
		return nil, sha, &InvalidNestError{Commit: sha, Diagnostics: strings.ReplaceAll(buf.String(), dir+string(filepath.Separator), "")}
	}
	return nest, sha, nil
}

// untarNest unpacks a GitLab archive into dir, dropping its top-level
// directory. Entries that would leave dir, links and oversized files are
// refused.
func untarNest(archive []byte, dir string) error {
	if len(archive) > maxNestArchive {
		return fmt.Errorf("the archive is over %d MiB", maxNestArchive>>20)
	}
	gz, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		return err
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean(h.Name)
		_, rest, ok := strings.Cut(name, "/")
		if !ok || rest == "" {
			continue // the top-level directory itself, or a global header
		}
		if strings.HasPrefix(rest, "../") || path.IsAbs(rest) {
			return fmt.Errorf("entry %q leaves the archive", h.Name)
		}
		target := filepath.Join(dir, filepath.FromSlash(rest))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if h.Size > maxNestFile {
				return fmt.Errorf("%s is over %d MiB", rest, maxNestFile>>20)
			}
			if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
				return err
			}
			b, err := io.ReadAll(io.LimitReader(tr, maxNestFile+1))
			if err != nil {
				return err
			}
			if err := os.WriteFile(target, b, 0o600); err != nil {
				return err
			}
		}
	}
}
