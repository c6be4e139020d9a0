CREATE TABLE "request_claims" (
	"request_hash" text PRIMARY KEY NOT NULL,
	"worker_id" text NOT NULL,
	"claimed_at" timestamp with time zone DEFAULT now() NOT NULL
);
