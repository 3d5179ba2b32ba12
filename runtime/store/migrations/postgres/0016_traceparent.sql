-- The W3C traceparent an execution came with (execute or webhook), so its trace continues the
-- caller's: its spans, the OTLP export and the traceparent of its outbound requests.
ALTER TABLE executions ADD COLUMN traceparent TEXT;
