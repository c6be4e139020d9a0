CREATE TABLE "provider_batch_requests" (
	"batch_row_id" text NOT NULL,
	"custom_id" text NOT NULL,
	"entry" jsonb NOT NULL,
	CONSTRAINT "provider_batch_requests_batch_row_id_custom_id_pk" PRIMARY KEY("batch_row_id","custom_id")
);
--> statement-breakpoint
ALTER TABLE "provider_batch_requests" ADD CONSTRAINT "provider_batch_requests_batch_row_id_provider_batches_id_fk" FOREIGN KEY ("batch_row_id") REFERENCES "public"."provider_batches"("id") ON DELETE cascade ON UPDATE no action;