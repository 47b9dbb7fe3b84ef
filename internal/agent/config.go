package agent

import (
	"encoding/json"
	"os"
	"path/filepath"

	"github.com/gosling-ci/gosling/internal/agentapi"
)

// writeConfig replaces the agent's configuration in its work directory; a
// running agent reads it again when it is resumed or reloaded.
func writeConfig(workDir string, cfg agentapi.Config) error {
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(workDir, configFile), b, 0o600)
}

func readConfig(workDir string) (agentapi.Config, error) {
	return agentapi.ReadConfigFile(filepath.Join(workDir, configFile))
}

// writeFileAtomic writes a file through a temporary one and a rename, so a
// reader sees the old content or the new, never a part.
func writeFileAtomic(path string, b []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, perm); err != nil {
		return err
	}
	if err := os.Chmod(tmp, perm); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
