package config

import "path/filepath"

// Resolve makes a path from the config file relative to the file's own
// directory, so that `herald serve -config /etc/herald/herald.hcl` means
// the same wherever it is started from. Absolute paths, and every path of a
// config built in code (File ""), are returned as they are.
func (c *Config) Resolve(path string) string {
	if path == "" || filepath.IsAbs(path) || c.File == "" {
		return path
	}
	return filepath.Join(filepath.Dir(c.File), path)
}
