package schemas

import "embed"

// Migrations holds the ledger's SQL migrations, one folder per dialect
// ("sqlite", "postgres"), files applied in name order.
//
//go:embed migrations
var Migrations embed.FS
