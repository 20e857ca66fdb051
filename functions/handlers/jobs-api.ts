// The jobs API on Powertools' Router: POST /jobs (sync or accepted), GET /jobs/{id}, POST /jobs/{id}/redrive.
import { randomUUID } from 'node:crypto';
import { NotFoundError, Router } from '@aws-lambda-powertools/event-handler/http';
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { type Manifest, readManifest, readStoredManifest, runJob } from '../core/index.ts';
import { checkJobRequest, checkRedriveRequest, errorReply, json } from './api-replies.ts';
import { isJobId } from './config.ts';
import { continueIfPartial } from './continuation.ts';
import { type AcceptedJob, claimObject, jobKey, readJsonObject, readPartLines } from './job-objects.ts';
import { buildRuntime, type HandlerDeps, type ResolvedDeps, resolveDeps } from './job-runtime.ts';
import { createShell, emptyRunFigures, recordRunMetrics } from './lambda-shell.ts';

/** Results and errors read back into a 200 when the job has at most this many outcomes. */
const INLINE_OUTCOMES_MAX = 100;
/** Paths the API knows, with the methods each allows: a known path with another method is a 405. */
const KNOWN_PATHS: ReadonlyArray<[RegExp, string]> = [
  [/^\/jobs\/?$/, 'POST'],
  [/^\/jobs\/[^/]+\/?$/, 'GET'],
  [/^\/jobs\/[^/]+\/redrive\/?$/, 'POST'],
];

export function createApiHandler(deps: HandlerDeps) {
  const shell = deps.shell ?? createShell({ tracing: deps.config.tracing });
  const resolved = resolveDeps(deps);
  // The Router hands routes the Lambda context only: the invocation's abort signal rides beside it.
  const signals = new WeakMap<Context, AbortSignal>();
  const router = new Router({ logger: shell.logger });

  router.post('/jobs', async ({ req, context }) => {
    const checked = await checkJobRequest(req, resolved.config);
    if (!checked.ok) return checked.reply;
    const { job, body, sha256 } = checked;
    shell.logger.appendKeys({ jobId: job.jobId });
    const accepted: AcceptedJob = {
      jobId: job.jobId,
      acceptedAt: new Date().toISOString(),
      requestSha256: sha256,
      job: body,
    };
    const acceptedKey = jobKey(resolved.store, job.jobId, 'accepted.json');
    if ((await claimObject(resolved.store, acceptedKey, accepted)) === 'exists') {
      return repeatReply(resolved, job.jobId, sha256, req.headers.has('idempotency-key'));
    }
    // Large jobs run in the runner: with FANOUT_STATE_MACHINE_ARN set, an S3 source (or more than the
    // runner's mapMinItems) is planned there and started as a Step Functions execution named by the job
    // id. Planning streams the whole source, which needs the runner's 15 minutes, not the API's 28 s.
    if (job.source !== undefined || job.items.length > resolved.config.syncMaxItems) {
      try {
        await resolved.dispatcher.dispatch({ jobId: job.jobId, accepted: true });
      } catch (error) {
        // Nothing will run it: free the id so the client's retry can start it.
        await resolved.store.client.send(
          new DeleteObjectCommand({ Bucket: resolved.store.bucket, Key: acceptedKey }),
        );
        throw error;
      }
      return acceptedReply(job.jobId, 'accepted');
    }
    const figures = emptyRunFigures();
    const signal = signals.get(context) ?? new AbortController().signal;
    let manifest: Manifest;
    try {
      manifest = await runJob(body, buildRuntime(resolved, shell, context, signal, figures));
    } catch (error) {
      // The id is claimed, so a retry of this POST would only answer "accepted": never leave it so.
      if ((await readManifest(resolved.store, job.jobId)) === null) {
        // Nothing was written: free the id so the client's retry can start it.
        await resolved.store.client.send(
          new DeleteObjectCommand({ Bucket: resolved.store.bucket, Key: acceptedKey }),
        );
        throw error;
      }
      // A run got as far as a manifest: the runner resumes it (from accepted.json), the client polls.
      shell.logger.error('the request run failed; the runner resumes the job', { error });
      await resolved.dispatcher.dispatch({ jobId: job.jobId, accepted: true });
      return acceptedReply(job.jobId, 'accepted');
    }
    recordRunMetrics(shell.metrics, manifest, figures);
    await continueIfPartial(resolved, shell, manifest, { next: 1, chainStart: 0 });
    return json(200, await withInline(resolved, manifest));
  });

  router.get('/jobs/:id', async ({ params, context }) => {
    const jobId = params.id ?? '';
    if (!isJobId(jobId)) return errorReply(404, 'NOT_FOUND', `no job ${JSON.stringify(jobId)}`);
    const manifest = await readManifest(resolved.store, jobId, signals.get(context));
    if (manifest === null) {
      const accepted = await readJsonObject<AcceptedJob>(
        resolved.store,
        jobKey(resolved.store, jobId, 'accepted.json'),
      );
      return accepted ? acceptedReply(jobId, 'accepted') : errorReply(404, 'NOT_FOUND', `no job ${jobId}`);
    }
    if (manifest.status === 'running') return acceptedReply(jobId, 'running', manifest);
    return json(200, manifest);
  });

  // A redrive can run as long as the job did: the runner does it, the API answers 202 at once.
  router.post('/jobs/:id/redrive', async ({ params, req, context }) => {
    const jobId = params.id ?? '';
    if (!isJobId(jobId)) return errorReply(404, 'NOT_FOUND', `no job ${JSON.stringify(jobId)}`);
    const checked = await checkRedriveRequest(req);
    if (!checked.ok) return checked.reply;
    // As stored, as the runner's redrive reads it: a dead run (which GET shows as partial) is refused
    // here too, rather than accepted and then refused by the runner.
    const manifest = await readStoredManifest(resolved.store, jobId, signals.get(context));
    if (manifest === null) return errorReply(404, 'NOT_FOUND', `no job ${jobId}`);
    if (manifest.status === 'running') {
      return errorReply(
        409,
        'JOB_RUNNING',
        `job ${jobId} is running, or its last run died: redrive it once a run has finished it (POST the job again to resume a dead run)`,
      );
    }
    shell.logger.appendKeys({ jobId });
    await resolved.dispatcher.dispatch({
      jobId,
      redrive: true,
      ...(checked.codes ? { codes: checked.codes } : {}),
    });
    return acceptedReply(jobId, 'accepted');
  });

  router.notFound(async (_error, { req }) => {
    const path = new URL(req.url).pathname;
    const known = KNOWN_PATHS.find(([pattern]) => pattern.test(path));
    if (known) {
      return errorReply(
        405,
        'METHOD_NOT_ALLOWED',
        `${req.method} is not allowed on ${path}; use ${known[1]}`,
        {
          headers: { allow: known[1] },
        },
      );
    }
    return errorReply(404, 'NOT_FOUND', `no route ${req.method} ${path}`);
  });

  // Everything else is ours to fix: the log has the stack under an id, the client gets the id only.
  router.errorHandler(Error, async (error, { req }) => {
    if (error instanceof NotFoundError) return errorReply(404, 'NOT_FOUND', 'not found');
    // The Router decodes path parameters: a broken %-escape is the client's, not ours.
    if (error instanceof URIError) {
      const path = new URL(req.url).pathname;
      return errorReply(400, 'INVALID_PATH', `path ${path} has a malformed %-escape`);
    }
    const errorId = randomUUID();
    shell.logger.error('request failed', { errorId, error });
    return errorReply(500, 'INTERNAL', `internal error; quote error id ${errorId}`, { errorId });
  });

  return shell.wrap(
    async (
      event: APIGatewayProxyEventV2,
      context: Context,
      { signal },
    ): Promise<APIGatewayProxyStructuredResultV2> => {
      signals.set(context, signal);
      return router.resolve(event, context);
    },
  );
}

function acceptedReply(jobId: string, status: 'accepted' | 'running', manifest?: Manifest): Response {
  const self = `/jobs/${jobId}`;
  const body: Record<string, unknown> = { jobId, status, links: { self } };
  if (manifest) {
    body.counts = manifest.counts;
    body.startedAt = manifest.startedAt;
  }
  return json(202, body, { location: self });
}

/** The same job asked for again: never a second start; its manifest if it has one, else "accepted". */
async function repeatReply(
  deps: ResolvedDeps,
  jobId: string,
  sha256: string,
  keyed: boolean,
): Promise<Response> {
  const accepted = await readJsonObject<AcceptedJob>(deps.store, jobKey(deps.store, jobId, 'accepted.json'));
  if (keyed && accepted && accepted.requestSha256 !== sha256) {
    return errorReply(
      409,
      'IDEMPOTENCY_KEY_REUSED',
      `Idempotency-Key ${jobId} was used with another request body`,
    );
  }
  const manifest = await readManifest(deps.store, jobId);
  if (manifest === null || manifest.status === 'running')
    return acceptedReply(jobId, 'accepted', manifest ?? undefined);
  if (manifest.status === 'partial') {
    // Asked again while partial (a deadline, or a run that died): the runner resumes it (DESIGN: a
    // later run resumes pending items); the job's lease keeps it from running twice at once.
    await deps.dispatcher.dispatch({ jobId, accepted: true });
    return acceptedReply(jobId, 'accepted', manifest);
  }
  return json(200, await withInline(deps, manifest));
}

/** The manifest, plus the outcome lines themselves when the job is small enough to answer in one reply. */
async function withInline(deps: ResolvedDeps, manifest: Manifest): Promise<Record<string, unknown>> {
  if (manifest.counts.succeeded + manifest.counts.failed > INLINE_OUTCOMES_MAX) return { ...manifest };
  const results = await readPartLines(deps.store, manifest.results, INLINE_OUTCOMES_MAX);
  const errors = await readPartLines(deps.store, manifest.errors, INLINE_OUTCOMES_MAX);
  return { ...manifest, inline: { results: results.lines, errors: errors.lines } };
}
