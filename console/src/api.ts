// The console's two ways to the API, both to the page's own origin: queries and mutations
// over HTTP (POST /graphql), subscriptions over one graphql-transport-ws WebSocket
// (/graphql), the admin's token sent with each.
//
// A subscription here never just ends: `follow` subscribes again, with the position of
// the last state it received as `after`, whenever the socket drops (a restart, a network
// cut) or the server ends it (SERVER_DRAINING on shutdown). The server then sends what
// changed meanwhile, and the caller drops any state no newer than the one it holds: no
// gap, no duplicate (README, "Resuming").

import { type Client, createClient } from 'graphql-ws';

import type { TypedDocumentString } from './gql/graphql.js';

/** An error the API answered with, its `extensions.code` kept. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
  }

  /** The token is not (or no longer) an admin's: signing in again is the only way on. */
  get refusesToken(): boolean {
    return this.code === 'UNAUTHENTICATED' || this.code === 'FORBIDDEN';
  }
}

interface GraphqlError {
  message: string;
  extensions?: { code?: string };
}

function firstError(errors: readonly GraphqlError[]): ApiError {
  const [first] = errors;
  return new ApiError(first?.message ?? 'unknown error', first?.extensions?.code);
}

const origin = window.location.origin;

/** Runs a query or mutation over HTTP; resolves to its data or rejects with an `ApiError`. */
export async function request<R, V>(
  token: string,
  document: TypedDocumentString<R, V>,
  variables: V,
): Promise<R> {
  const response = await fetch(`${origin}/graphql`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/graphql-response+json, application/json',
      authorization: `Bearer ${token}`,
    },
    body: JSON.stringify({ query: document.toString(), variables }),
  });
  const body = (await response.json()) as { data?: R | null; errors?: GraphqlError[] };
  if (body.errors?.length) {
    throw firstError(body.errors);
  }
  if (!body.data) {
    throw new ApiError(`HTTP ${response.status} without data`, undefined);
  }
  return body.data;
}

export type Connection = 'connecting' | 'live' | 'reconnecting';

/** Backoff between attempts to subscribe again: 100 ms doubling to 2 s. */
const retryDelay = (attempt: number) => Math.min(2_000, 100 * 2 ** attempt);

/** One WebSocket for every subscription of a signed-in admin. */
export class Live {
  private readonly client: Client;

  constructor(
    token: string,
    onConnection: (state: Connection) => void,
    private readonly onRefused: (error: ApiError) => void,
  ) {
    const url = new URL('/graphql', origin);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    this.client = createClient({
      url: url.toString(),
      connectionParams: { authorization: `Bearer ${token}` },
      lazy: true,
      // `follow` resubscribes itself, with a fresh `after`: the client's own retry would
      // send each subscription's first variables again.
      retryAttempts: 0,
      keepAlive: 10_000,
      on: {
        connected: () => onConnection('live'),
        closed: (event) => {
          onConnection('reconnecting');
          // 4403: the server refused `connection_init` (a bad or expired token, or too
          // many connections of this user), or closed the socket at the token's expiry.
          const close = event as CloseEvent | undefined;
          if (close?.code === 4403) {
            this.onRefused(new ApiError(close.reason || 'the server refused the token', 'FORBIDDEN'));
          }
        },
      },
    });
  }

  /**
   * Follows a subscription for as long as the returned function is not called: each
   * result's data goes to `next`, and `variables()` is asked again for every new
   * subscription (so it can name the last position received).
   */
  follow<R, V>(document: TypedDocumentString<R, V>, variables: () => V, next: (data: R) => void): () => void {
    let stopped = false;
    let attempt = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let unsubscribe = () => {};
    const again = () => {
      if (stopped) {
        return;
      }
      timer = setTimeout(start, retryDelay(attempt));
      attempt += 1;
    };
    const start = () => {
      if (stopped) {
        return;
      }
      unsubscribe = this.client.subscribe<R>(
        { query: document.toString(), variables: variables() as Record<string, unknown> },
        {
          next: (result) => {
            if (result.errors?.length) {
              const error = firstError(result.errors as GraphqlError[]);
              if (error.refusesToken) {
                stopped = true;
                this.onRefused(error);
              }
              return; // SERVER_DRAINING and the like: the end follows, then `again`.
            }
            if (result.data) {
              attempt = 0;
              next(result.data);
            }
          },
          error: (error) => {
            if (Array.isArray(error)) {
              const refused = firstError(error as GraphqlError[]);
              if (refused.refusesToken) {
                stopped = true;
                this.onRefused(refused);
                return;
              }
            }
            again();
          },
          complete: again,
        },
      );
    };
    start();
    return () => {
      stopped = true;
      clearTimeout(timer);
      unsubscribe();
    };
  }

  /** A subscription that ends by itself (a rebuild's progress): no resubscribing. */
  once<R, V>(document: TypedDocumentString<R, V>, variables: V, next: (data: R) => void): () => void {
    return this.client.subscribe<R>(
      { query: document.toString(), variables: variables as Record<string, unknown> },
      {
        next: (result) => {
          if (result.data) {
            next(result.data);
          }
        },
        error: () => {},
        complete: () => {},
      },
    );
  }

  close(): void {
    void this.client.dispose();
  }
}

/** Compares two positions (digit strings that may exceed 2^53). */
export function newer(a: string, b: string | undefined): boolean {
  return b === undefined || BigInt(a) > BigInt(b);
}
