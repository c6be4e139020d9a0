CREATE TABLE "budgets" (
	"key" text PRIMARY KEY NOT NULL,
	"cap_usd" double precision NOT NULL,
	"spent_usd" double precision DEFAULT 0 NOT NULL,
	"reserved_usd" double precision DEFAULT 0 NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "spend_reservations" (
	"holder" text NOT NULL,
	"budget_key" text NOT NULL,
	"run_id" text NOT NULL,
	"amount_usd" double precision DEFAULT 0 NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "spend_reservations_holder_budget_key_pk" PRIMARY KEY("holder","budget_key")
);
--> statement-breakpoint
CREATE INDEX "spend_reservations_key" ON "spend_reservations" USING btree ("budget_key");