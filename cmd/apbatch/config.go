package main

import (
	"flag"
	"strings"
	"time"

	"github.com/apbatch/apbatch/pipeline"
)

// configFlags declares settings of pipeline.Config as a command's flags,
// with --config, and loads the configuration once they are parsed: the
// command's defaults, then the file, the APBATCH_* variables, the flags
// given (pipeline.LoadConfig).
type configFlags struct {
	fs   *flag.FlagSet
	def  pipeline.Config
	set  pipeline.Config   // what the flags write
	keys map[string]string // flag name → setting
	file string            // --config
}

// init starts the flags of fs on def, the command's defaults, and
// declares --config.
func (c *configFlags) init(fs *flag.FlagSet, def pipeline.Config) {
	c.fs, c.def, c.set, c.keys = fs, def, def, map[string]string{}
	fs.StringVar(&c.file, "config", "", "YAML file of settings, keys named as the flags (flush-interval: 30s), below the APBATCH_* variables and the flags ("+pipeline.ConfigFileEnv+"); never secrets")
}

// setting declares the flag --key of the setting key.
func (c *configFlags) setting(key, usage string) { c.settingAs(key, key, usage) }

// settingAs declares the flag --name of the setting key; its usage names
// the setting's variable.
func (c *configFlags) settingAs(name, key, usage string) {
	if env := pipeline.ConfigEnv(key); env != "" && !strings.Contains(usage, env) {
		usage += " (" + env + ")"
	}
	c.keys[name] = key
	switch p := c.set.Ptr(key).(type) {
	case *string:
		c.fs.StringVar(p, name, *p, usage)
	case *int:
		c.fs.IntVar(p, name, *p, usage)
	case *float64:
		c.fs.Float64Var(p, name, *p, usage)
	case *bool:
		c.fs.BoolVar(p, name, *p, usage)
	case *time.Duration:
		c.fs.DurationVar(p, name, *p, usage)
	default:
		panic("apbatch: no setting " + key) // a mistake in a flags() method
	}
}

// load returns the configuration of the parsed flags; the file is
// --config, else APBATCH_CONFIG.
func (c *configFlags) load(getenv func(string) string) (pipeline.Config, error) {
	flags := map[string]string{}
	c.fs.Visit(func(f *flag.Flag) {
		if key, ok := c.keys[f.Name]; ok {
			flags[key] = f.Value.String()
		}
	})
	file := c.file
	if file == "" {
		file = strings.TrimSpace(getenv(pipeline.ConfigFileEnv))
	}
	return pipeline.LoadConfig(c.def, file, getenv, flags)
}
