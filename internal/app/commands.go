package app

import (
	"context"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/commands"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/lifecycle"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// startCommands builds the commands role on the process's one IDnow client: its calls count
// against idnow.rate_limit, capped at commands.rate_limit.
func (a *App) startCommands(ctx context.Context) error {
	api, err := a.idnowClient(ctx)
	if err != nil {
		return err
	}
	opts, err := a.kafkaOpts("commands")
	if err != nil {
		return err
	}
	kc := a.cfg.Kafka
	kc.Brokers = a.brokers
	tableOpts, err := newKafkaOpts(kc, "commands-state")
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, startupTimeout)
	defer cancel()
	// The role owns the contract of all three topics: in registry mode it registers the command
	// schema too (with the subject's compatibility level), so callers can look it up.
	cmds, err := a.codec(sctx, schemas.CreateSessionCommandSchema(), a.cfg.Topics.Commands)
	if err != nil {
		return err
	}
	replies, err := a.codec(sctx, schemas.CommandReplySchema(), a.cfg.Topics.Replies)
	if err != nil {
		return err
	}
	states, err := a.codec(sctx, schemas.CommandStateSchema(), a.cfg.Topics.CommandsState)
	if err != nil {
		return err
	}
	c, err := commands.New(a.cfg.Commands, commands.Deps{
		KafkaOpts: opts, TableOpts: tableOpts, Topics: a.cfg.Topics, API: api, Environment: a.cfg.IDnow.Environment,
		Commands: cmds, Replies: replies, States: states, StatesDecoder: states,
		Registry: a.reg, Log: a.log, TokenCheck: api.Token,
	})
	if err != nil {
		return err
	}
	a.group.Add(lifecycle.Part{Name: "commands", Run: c.Run, StopTimeout: c.StopTimeout()})
	a.admin.AddCheck("commands", c.Ready)
	return nil
}
