package server

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ApplyFile applies a YAML config file to cfg. Its keys are the flag names
// (`tick-rate: 60`); lists may be YAML sequences. Unknown keys, wrong types
// and out-of-range values are errors naming the key and its line.
func ApplyFile(cfg *Config, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	return applyYAML(cfg, data, path)
}

func applyYAML(cfg *Config, data []byte, name string) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if len(doc.Content) == 0 {
		return nil // an empty file: all defaults
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("%s: the top level must be a mapping of setting: value", name)
	}
	var errs []error
	seen := map[string]bool{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		key, val := root.Content[i], root.Content[i+1]
		s, ok := settingByName(key.Value)
		if !ok {
			errs = append(errs, fmt.Errorf("%s:%d: unknown setting %q (see docs/OPERATIONS.md)", name, key.Line, key.Value))
			continue
		}
		if seen[key.Value] {
			errs = append(errs, fmt.Errorf("%s:%d: %q is set twice", name, key.Line, key.Value))
			continue
		}
		seen[key.Value] = true
		text, err := scalarText(val)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %s: %w", name, val.Line, key.Value, err))
			continue
		}
		if err := s.set(cfg, text); err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %w", name, val.Line, err))
		}
	}
	return errors.Join(errs...)
}

// scalarText turns a YAML value into the text a setting parses: scalars as
// written, sequences of scalars comma-joined.
func scalarText(n *yaml.Node) (string, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		return n.Value, nil
	case yaml.SequenceNode:
		parts := make([]string, 0, len(n.Content))
		for _, item := range n.Content {
			if item.Kind != yaml.ScalarNode {
				return "", errors.New("list items must be plain values")
			}
			parts = append(parts, item.Value)
		}
		return strings.Join(parts, ","), nil
	default:
		return "", errors.New("expected a value or a list of values")
	}
}

func settingByName(name string) (setting, bool) {
	for _, s := range settings {
		if s.Name == name {
			return s, true
		}
	}
	return setting{}, false
}

// ConfigFileFlag is the flag (and TICKRELAY_CONFIG) naming the config file.
const ConfigFileFlag = "config"

// LoadConfig builds a Config from, in increasing precedence: the embedded
// defaults, the config file (-config or TICKRELAY_CONFIG), TICKRELAY_*
// environment variables, and flags. extra registers flags that are not
// server settings (log level...) on the same FlagSet. It returns the config
// and the file path used ("" for none).
func LoadConfig(args []string, getenv func(string) string, extra func(*flag.FlagSet)) (Config, string, error) {
	var cfg Config
	path := getenv(EnvName(ConfigFileFlag))
	// The file must be applied before env and flags, so find its flag first.
	probe := flag.NewFlagSet("probe", flag.ContinueOnError)
	probe.SetOutput(io.Discard)
	probe.String(ConfigFileFlag, path, "")
	BindFlags(probe, &Config{})
	if extra != nil {
		extra(probe)
	}
	if err := probe.Parse(args); err == nil {
		path = probe.Lookup(ConfigFileFlag).Value.String()
	}
	if path != "" {
		if err := ApplyFile(&cfg, path); err != nil {
			return cfg, path, err
		}
	}
	if err := ApplyEnv(&cfg, getenv); err != nil {
		return cfg, path, err
	}
	fs := flag.NewFlagSet("tickrelay", flag.ContinueOnError)
	fs.String(ConfigFileFlag, path, "YAML config file; keys are the flag names (env "+EnvName(ConfigFileFlag)+")")
	BindFlags(fs, &cfg)
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return cfg, path, err
	}
	if path != "" && cfg.Auth.Mode == "" {
		// A production config says whether players need tokens; only the
		// embedded defaults (make run) start open, with a warning.
		return cfg, path, fmt.Errorf("%s: set auth: jwt (players need tokens from your backend) or auth: off (anyone may join), explicitly", path)
	}
	return cfg, path, nil
}
