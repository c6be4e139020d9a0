CREATE TABLE "source_cursors" (
	"pipeline" text NOT NULL,
	"source" text NOT NULL,
	"cursor" text NOT NULL,
	"run_id" text NOT NULL,
	"rows_read" integer NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "source_cursors_pipeline_source_pk" PRIMARY KEY("pipeline","source")
);
--> statement-breakpoint
CREATE TABLE "source_files" (
	"pipeline" text NOT NULL,
	"path" text NOT NULL,
	"fingerprint" text NOT NULL,
	"run_id" text NOT NULL,
	"read_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "source_files_pipeline_path_fingerprint_pk" PRIMARY KEY("pipeline","path","fingerprint")
);
