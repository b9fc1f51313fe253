// /metrics with `workers > 1`: sessions run in the workers, so their counters
// live there. At each scrape the primary asks every worker for its series
// (prom-client JSON over the cluster IPC channel), keeps the process-wide ones
// (build, config generation, reloads) from its own registry, and adds up the
// rest by name and labels with prom-client's aggregator (counters and
// histograms summed; the default process metrics by their own rules).
import { AggregatorRegistry, type Registry } from 'prom-client';
import { PRIMARY_SERIES } from './registry.js';

/** The text of an aggregated scrape: `own` is the primary's registry, `workers` each worker's JSON. */
export async function clusterMetrics(own: Registry, workers: () => Promise<unknown[][]>): Promise<string> {
  const [mine, theirs] = await Promise.all([own.getMetricsAsJSON(), workers()]);
  // Session series from the primary are all zero (it runs none): dropped, so sessions_open is counted once.
  const primary = mine.filter((m) => PRIMARY_SERIES.has(m.name) || !m.name.startsWith('pgcmek_'));
  const fromWorkers = theirs.map((list) => (list as { name: string }[]).filter((m) => !PRIMARY_SERIES.has(m.name)));
  return AggregatorRegistry.aggregate([primary, ...fromWorkers]).metrics();
}
