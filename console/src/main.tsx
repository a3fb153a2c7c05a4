// The live console: sign in with an admin token (kept in this tab's sessionStorage), then
// watch the shop and its machinery move, pushed by the API's subscriptions: the
// dashboard's figures, orders passing through the saga, each projection's position and
// lag (with verify, rebuild and the rebuild's progress), the replicas of the cluster and
// the units of work each holds (a failover highlighted as it happens), a product's stock
// and price over time. Nothing here polls: every change on the page is a message from
// the server, or the answer to a click.

import { render } from 'preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';

import { ApiError, type Connection, Live, newer, request } from './api.js';
import { Bars, Sparkline, TimeChart } from './charts.js';
import {
  ClusterUpdated,
  DashboardUpdated,
  OrderHistory,
  OrderUpdated,
  ProductTimeline,
  ProductUpdated,
  Products,
  ProjectionsUpdated,
  RebuildProgress,
  RebuildProjection,
  RecentOrders,
  VerifyProjection,
  WhoAmI,
} from './documents.js';
import type {
  ConsoleClusterSubscription,
  ConsoleDashboardSubscription,
  ConsoleOrderFragment,
  ConsoleOrderHistoryQuery,
  ConsoleProductTimelineQuery,
  ConsoleProductsQuery,
  ConsoleProjectionsSubscription,
  ConsoleRebuildProgressFragment,
  ConsoleVerifyMutation,
  OrderStatus,
  RebuildPhase,
} from './gql/graphql.js';
import './console.css';

const TOKEN_KEY = 'ordergraph.console.token';
/** Orders kept on the page, newest first. */
const FEED_LENGTH = 50;
/** Points kept in each sparkline. */
const SPARK_LENGTH = 60;

/** How long a unit that changed holder stays highlighted. */
const MOVED_FOR_MS = 8_000;

type Dashboard = ConsoleDashboardSubscription['dashboardUpdated'];
type Projection = ConsoleProjectionsSubscription['projectionsUpdated'][number];

const time = (iso: string) => new Date(iso).toLocaleTimeString();
// Order ids are UUIDv7: the first digits are the time, alike for orders of one day.
const shortId = (id: string) => `…${id.slice(-8)}`;

// ---------------------------------------------------------------------------------------

function SignIn({ onToken, error }: { onToken: (token: string) => void; error: string | null }) {
  const [value, setValue] = useState('');
  const [checking, setChecking] = useState(false);
  const [refusal, setRefusal] = useState<string | null>(error);
  const submit = async (event: Event) => {
    event.preventDefault();
    const token = value.trim().replace(/^Bearer\s+/i, '');
    setChecking(true);
    try {
      await request(token, WhoAmI, {});
      onToken(token);
    } catch (err) {
      setRefusal(err instanceof ApiError ? `${err.message} (${err.code ?? 'no code'})` : String(err));
    } finally {
      setChecking(false);
    }
  };
  return (
    <form class="signin" onSubmit={submit}>
      <h1>ordergraph console</h1>
      <p>
        Sign in with an admin token (<code>ordergraph token --sub you --role admin</code>). It is kept in this tab
        only, until you sign out or close it.
      </p>
      <label>
        Admin token
        <textarea
          name="token"
          rows={4}
          value={value}
          onInput={(e) => setValue((e.target as HTMLTextAreaElement).value)}
          autocomplete="off"
          spellcheck={false}
        />
      </label>
      <button type="submit" disabled={checking || value.trim() === ''}>
        Sign in
      </button>
      {refusal && (
        <p class="error" role="alert">
          {refusal}
        </p>
      )}
    </form>
  );
}

// ---------------------------------------------------------------------------------------

function Figures({ live }: { live: Live }) {
  const [dashboard, setDashboard] = useState<Dashboard | null>(null);
  const [revenue, setRevenue] = useState<number[]>([]);
  const [today, setToday] = useState<number[]>([]);
  const position = useRef<string | undefined>(undefined);
  useEffect(
    () =>
      live.follow(
        DashboardUpdated,
        () => ({ after: position.current ?? null }),
        ({ dashboardUpdated: d }) => {
          // A resumed subscription sends the figures again first: same position, no new point.
          if (!newer(d.position, position.current)) {
            return;
          }
          position.current = d.position;
          setDashboard(d);
          setRevenue((r) => [...r, Number(d.revenue)].slice(-SPARK_LENGTH));
          setToday((t) => [...t, d.ordersToday].slice(-SPARK_LENGTH));
        },
      ),
    [live],
  );
  if (!dashboard) {
    return <section class="panel figures">Loading figures…</section>;
  }
  return (
    <section class="panel figures" aria-label="figures" data-position={dashboard.position}>
      <h2>Figures</h2>
      <div class="cards">
        <div class="card">
          <span class="card-label">Revenue</span>
          <span class="card-value" data-testid="revenue">
            {dashboard.revenue}
          </span>
          <Sparkline values={revenue} label="revenue since this page opened" />
        </div>
        <div class="card">
          <span class="card-label">Orders today (UTC)</span>
          <span class="card-value" data-testid="orders-today">
            {dashboard.ordersToday}
          </span>
          <Sparkline values={today} label="orders today since this page opened" />
        </div>
        <div class="card wide">
          <span class="card-label">Orders per status</span>
          <Bars items={dashboard.ordersByStatus.map((s) => ({ label: s.status, value: s.count }))} />
        </div>
        <div class="card">
          <span class="card-label">Low stock (≤ 5)</span>
          <ul class="low-stock" data-testid="low-stock">
            {dashboard.lowStock.length === 0 && <li class="muted">none</li>}
            {dashboard.lowStock.map((p) => (
              <li key={p.id}>
                <code>{p.sku}</code> {p.stock}
              </li>
            ))}
          </ul>
        </div>
      </div>
    </section>
  );
}

// ---------------------------------------------------------------------------------------

interface Tracked {
  order: ConsoleOrderFragment;
  /** The statuses this page saw the order in, in order. */
  trail: OrderStatus[];
}

function Orders({ live, token, selected, onSelect }: { live: Live; token: string; selected: string | null; onSelect: (order: ConsoleOrderFragment) => void }) {
  const [orders, setOrders] = useState<Map<string, Tracked>>(new Map());
  const last = useRef<string | undefined>(undefined);
  // The details panel shows the selected order's newest state, from this feed.
  const follower = useRef({ selected, onSelect });
  follower.current = { selected, onSelect };
  useEffect(() => {
    let stop = () => {};
    let cancelled = false;
    const take = (order: ConsoleOrderFragment) => {
      if (newer(order.position, last.current)) {
        last.current = order.position;
      }
      if (order.id === follower.current.selected) {
        follower.current.onSelect(order);
      }
      setOrders((current) => {
        const known = current.get(order.id);
        // A state no newer than the one shown (sent again on resuming): dropped.
        if (known && !newer(order.position, known.order.position)) {
          return current;
        }
        const next = new Map(current);
        const trail = known ? known.trail : [];
        next.set(order.id, {
          order,
          trail: trail[trail.length - 1] === order.status ? trail : [...trail, order.status],
        });
        return next;
      });
    };
    (async () => {
      // The newest orders first, then every change after the newest position among them
      // (after "0" when there is none: every order there is, which is none yet).
      const recent = await request(token, RecentOrders, { first: FEED_LENGTH }).catch(() => null);
      if (cancelled) {
        return;
      }
      for (const edge of [...(recent?.orders.edges ?? [])].reverse()) {
        take(edge.node);
      }
      stop = live.follow(OrderUpdated, () => ({ after: last.current ?? '0' }), (d) => take(d.orderUpdated));
    })();
    return () => {
      cancelled = true;
      stop();
    };
  }, [live, token]);
  const rows = useMemo(
    () =>
      [...orders.values()]
        .sort((a, b) => (a.order.placedAt < b.order.placedAt ? 1 : a.order.placedAt > b.order.placedAt ? -1 : 0))
        .slice(0, FEED_LENGTH),
    [orders],
  );
  return (
    <section class="panel orders" aria-label="orders">
      <h2>Orders through the saga</h2>
      {rows.length === 0 && <p class="muted">No orders yet: they appear here as they are placed.</p>}
      <table>
        <thead>
          <tr>
            <th>order</th>
            <th>user</th>
            <th>total</th>
            <th>saga</th>
            <th>reason</th>
            <th>updated</th>
          </tr>
        </thead>
        <tbody>
          {rows.map(({ order, trail }) => (
            <tr
              key={order.id}
              class={order.id === selected ? 'selected' : ''}
              data-order={order.id}
              data-status={order.status}
              data-position={order.position}
              onClick={() => onSelect(order)}
            >
              <td>
                <code>{shortId(order.id)}</code>
              </td>
              <td>{order.userId}</td>
              <td class="num">{order.total}</td>
              <td class="trail">
                {trail.map((status, i) => (
                  <span key={status} class={`chip status-${status}${i === trail.length - 1 ? ' current' : ''}`}>
                    {status}
                  </span>
                ))}
              </td>
              <td class="reason">{order.reason ?? ''}</td>
              <td>{time(order.updatedAt)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

// ---------------------------------------------------------------------------------------

type HistoryEvent = ConsoleOrderHistoryQuery['history']['edges'][number]['node'];

function meta(event: HistoryEvent, key: string): string {
  const value = (event.metadata as Record<string, unknown> | null)?.[key];
  return typeof value === 'string' ? value : '';
}

function why(event: HistoryEvent): string {
  const data = event.data as Record<string, unknown> | null;
  const reason = data?.['reason'];
  return typeof reason === 'string' ? reason : '';
}

function OrderDetails({ token, order }: { token: string; order: ConsoleOrderFragment }) {
  const [events, setEvents] = useState<HistoryEvent[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  // Read again when the order moves (its position changes): pushed, not polled.
  useEffect(() => {
    let cancelled = false;
    request(token, OrderHistory, { id: order.id })
      .then((d) => !cancelled && setEvents(d.history.edges.map((e) => e.node)))
      .catch((err) => !cancelled && setError(String(err)));
    return () => {
      cancelled = true;
    };
  }, [token, order.id, order.position]);
  return (
    <section class="panel details" aria-label="order details" data-order={order.id}>
      <h2>
        Order <code>{order.id}</code>
      </h2>
      <dl class="facts">
        <dt>status</dt>
        <dd data-testid="detail-status">{order.status}</dd>
        <dt>user</dt>
        <dd>{order.userId}</dd>
        <dt>reservation</dt>
        <dd>{order.reservation}</dd>
        <dt>payment</dt>
        <dd>{order.payment}</dd>
        <dt>total</dt>
        <dd>{order.total}</dd>
        {order.reason && (
          <>
            <dt>reason</dt>
            <dd>{order.reason}</dd>
          </>
        )}
      </dl>
      <table class="lines">
        <tbody>
          {order.lines.map((line) => (
            <tr key={line.productId}>
              <td>
                <code>{line.sku}</code> {line.name}
              </td>
              <td class="num">
                {line.quantity} × {line.unitPrice}
              </td>
              <td class="num">{line.lineTotal}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h3>History</h3>
      {error && <p class="error">{error}</p>}
      <table class="history">
        <thead>
          <tr>
            <th>#</th>
            <th>event</th>
            <th>when</th>
            <th>who</th>
            <th>why</th>
          </tr>
        </thead>
        <tbody>
          {(events ?? []).map((event) => (
            <tr key={event.position} data-event={event.type}>
              <td>{event.version}</td>
              <td>{event.type}</td>
              <td>{time(event.recordedAt)}</td>
              <td>{meta(event, 'userId') || 'the saga'}</td>
              <td>
                {why(event)}
                <span class="muted"> {meta(event, 'causationId')}</span>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

// ---------------------------------------------------------------------------------------

type Rebuild = ConsoleRebuildProgressFragment & { seen: string[] };
const PHASE_RANK: Record<RebuildPhase, number> = { IDLE: 0, REPLAYING: 1, SWAPPING: 2, DONE: 3, FAILED: 3 };
type Verified = ConsoleVerifyMutation['verifyProjection'];

function Projections({ live, token }: { live: Live; token: string }) {
  const [table, setTable] = useState<Projection[]>([]);
  const [rebuilds, setRebuilds] = useState<Record<string, Rebuild>>({});
  const [verified, setVerified] = useState<Record<string, Verified | string>>({});
  useEffect(() => live.follow(ProjectionsUpdated, () => ({}), (d) => setTable(d.projectionsUpdated)), [live]);

  // A rebuild's states arrive by two ways (the mutation's answer, the subscription) in
  // either order: the bar never goes back a phase.
  const progress = (p: ConsoleRebuildProgressFragment) =>
    setRebuilds((all) => {
      const current = all[p.name];
      if (current && (PHASE_RANK[p.phase] < PHASE_RANK[current.phase] || (p.phase === current.phase && p.eventsDone < current.eventsDone))) {
        return all;
      }
      const seen = current?.seen ?? [];
      return { ...all, [p.name]: { ...p, seen: seen[seen.length - 1] === p.phase ? seen : [...seen, p.phase] } };
    });
  const rebuild = async (name: string) => {
    setRebuilds(({ [name]: _previous, ...others }) => others);
    // Follow first, then start: the subscription's first state is the one before this
    // rebuild (idle, or the last one's end), every later one is this rebuild's.
    let stop = () => {};
    await new Promise<void>((ready) => {
      let first = true;
      const timer = setTimeout(ready, 5_000); // no socket now: the mutation's answer still shows
      stop = live.once(RebuildProgress, { name }, (d) => {
        if (first) {
          first = false;
          clearTimeout(timer);
          ready();
          return;
        }
        progress(d.rebuildProgress);
        if (d.rebuildProgress.phase === 'DONE' || d.rebuildProgress.phase === 'FAILED') {
          stop();
        }
      });
    });
    try {
      progress((await request(token, RebuildProjection, { name })).rebuildProjection);
    } catch (err) {
      stop();
      setVerified((all) => ({ ...all, [name]: String(err) }));
    }
  };
  const verify = async (name: string) => {
    setVerified((all) => ({ ...all, [name]: 'verifying…' }));
    try {
      const report = (await request(token, VerifyProjection, { name })).verifyProjection;
      setVerified((all) => ({ ...all, [name]: report }));
    } catch (err) {
      setVerified((all) => ({ ...all, [name]: String(err) }));
    }
  };

  return (
    <section class="panel projections" aria-label="projections">
      <h2>Projections</h2>
      <table>
        <thead>
          <tr>
            <th>view</th>
            <th>position</th>
            <th>head</th>
            <th>lag</th>
            <th>lag (s)</th>
            <th>status</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {table.map((p) => {
            const r = rebuilds[p.name];
            const v = verified[p.name];
            const percent = r && r.eventsTotal > 0 ? Math.round((r.eventsDone / r.eventsTotal) * 100) : r?.phase === 'DONE' ? 100 : 0;
            return (
              <tr key={p.name} data-projection={p.name} data-status={p.status} data-lag={p.lag}>
                <td>
                  <strong>{p.name}</strong>
                  {p.error && <div class="error">{`failed at ${p.failedPosition ?? '?'}: ${p.error}`}</div>}
                </td>
                <td class="num" data-testid="position">
                  {p.position}
                </td>
                <td class="num">{p.head}</td>
                <td class="num">{p.lag}</td>
                <td class="num">{(p.lagMillis / 1000).toFixed(1)}</td>
                <td>
                  <span class={`chip state-${p.status}`}>{p.status}</span>
                </td>
                <td class="actions">
                  <button type="button" onClick={() => verify(p.name)}>
                    Verify
                  </button>
                  <button type="button" onClick={() => rebuild(p.name)}>
                    Rebuild
                  </button>
                  {v !== undefined && (
                    <div class="verify" data-testid="verify" data-ok={typeof v === 'string' ? undefined : String(v.ok)}>
                      {typeof v === 'string'
                        ? v
                        : v.ok
                          ? `equal to a replay: ${v.rows} rows at ${v.position} (${v.elapsedMillis} ms)`
                          : `${v.differences} rows differ from a replay`}
                    </div>
                  )}
                  {r && r.phase && (
                    <div class="rebuild" data-testid="rebuild" data-phase={r.phase} data-seen={r.seen.join(' ')}>
                      <progress max={100} value={percent} />
                      <span>
                        {r.phase} {r.eventsDone}/{r.eventsTotal} events
                        {r.phase === 'DONE' ? `, ${r.rows} rows` : ''}
                        {r.error ? `: ${r.error}` : ''}
                      </span>
                    </div>
                  )}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </section>
  );
}

// ---------------------------------------------------------------------------------------

type ClusterState = ConsoleClusterSubscription['clusterUpdated'];

/** A unit whose holder changed while the page watched: its holders in turn (null: nobody). */
interface Move {
  path: (string | null)[];
  at: number;
}

const holderName = (holder: string | null) => holder ?? 'nobody';

/** `projector:catalog` → `catalog`, `saga:3` → `saga 3`: short enough for a replica's row. */
const unitShort = (name: string) => (name.startsWith('projector:') ? name.slice('projector:'.length) : name.replace(':', ' '));

function ClusterPanel({ live }: { live: Live }) {
  const [cluster, setCluster] = useState<ClusterState | null>(null);
  const [moves, setMoves] = useState<Record<string, Move>>({});
  // The holders last received, to see what moved: kept across a resubscription, so that
  // a failover that happened while the page was away still shows.
  const holders = useRef<Map<string, string | null> | null>(null);
  useEffect(
    () =>
      live.follow(
        ClusterUpdated,
        () => ({}),
        ({ clusterUpdated: c }) => {
          const before = holders.current;
          holders.current = new Map(c.units.map((u) => [u.name, u.holder ?? null]));
          setCluster(c);
          if (!before) {
            return; // the first state: nothing moved yet, as far as the page knows
          }
          const now = Date.now();
          const moved = c.units.filter((u) => before.has(u.name) && before.get(u.name) !== (u.holder ?? null));
          if (moved.length === 0) {
            return;
          }
          setMoves((all) => {
            const next = { ...all };
            for (const unit of moved) {
              const was = before.get(unit.name) ?? null;
              const current = next[unit.name];
              // A failover comes in steps (its holder gone, nobody, a new holder): one trail.
              const path =
                current && now - current.at < MOVED_FOR_MS && current.path[current.path.length - 1] === was
                  ? [...current.path, unit.holder ?? null]
                  : [was, unit.holder ?? null];
              next[unit.name] = { path, at: now };
            }
            return next;
          });
        },
      ),
    [live],
  );
  // A highlight fades after MOVED_FOR_MS: a timer of the page, nothing asked of the server.
  useEffect(() => {
    const times = Object.values(moves).map((m) => m.at);
    if (times.length === 0) {
      return;
    }
    const timer = setTimeout(
      () => setMoves((all) => Object.fromEntries(Object.entries(all).filter(([, m]) => Date.now() - m.at < MOVED_FOR_MS))),
      Math.max(0, Math.min(...times) + MOVED_FOR_MS - Date.now()) + 50,
    );
    return () => clearTimeout(timer);
  }, [moves]);
  if (!cluster) {
    return <section class="panel cluster">Loading the cluster…</section>;
  }
  const held = (node: string) => cluster.units.filter((u) => u.holder === node);
  const unheld = cluster.units.filter((u) => !u.holder).length;
  const failovers = Object.keys(moves).length;
  return (
    <section class="panel cluster" aria-label="cluster" data-node={cluster.node}>
      <h2>
        Cluster
        <span class="muted summary">
          {' '}
          {cluster.nodes.filter((n) => n.alive).length} of {cluster.nodes.length} replicas alive · {cluster.units.length} units
          {unheld > 0 ? `, ${unheld} held by nobody` : ', all held'}
          {failovers > 0 ? ` · ${failovers} just moved` : ''}
        </span>
      </h2>
      <div class="cluster-tables">
        <table class="replicas">
          <thead>
            <tr>
              <th>replica</th>
              <th>alive</th>
              <th>roles</th>
              <th>units held</th>
              <th>serving</th>
              <th>lag</th>
              <th>since</th>
            </tr>
          </thead>
          <tbody>
            {cluster.nodes.map((n) => (
              <tr key={n.id} class={n.alive ? '' : 'gone'} data-replica={n.id} data-alive={String(n.alive)} data-units={n.unitsHeld}>
                <td>
                  <code>{n.id}</code>
                  {n.id === cluster.node && <span class="muted"> (serving this page)</span>}
                </td>
                <td>
                  <span class={`chip ${n.alive ? 'state-RUNNING' : 'state-FAILED'}`}>{n.alive ? 'alive' : 'gone'}</span>
                </td>
                <td>{n.roles.join(', ')}</td>
                <td>
                  <span class="num-inline">{n.unitsHeld}</span>{' '}
                  {held(n.id).map((u) => (
                    <span key={u.name} class={`chip unit${moves[u.name] ? ' moved' : ''}`}>
                      {unitShort(u.name)}
                    </span>
                  ))}
                </td>
                <td class="num" data-testid="serving">
                  {n.serving?.position ?? '–'}
                </td>
                <td class="num">{n.serving ? n.serving.lag : '–'}</td>
                <td>{time(n.since)}</td>
              </tr>
            ))}
          </tbody>
        </table>
        <table class="units">
          <thead>
            <tr>
              <th>unit</th>
              <th>holder</th>
              <th>since</th>
            </tr>
          </thead>
          <tbody>
            {cluster.units.map((u) => {
              const move = moves[u.name];
              return (
                <tr
                  key={u.name}
                  class={move ? 'moved' : u.holder ? '' : 'unheld'}
                  data-unit={u.name}
                  data-holder={u.holder ?? ''}
                  data-moved={move ? move.path.map(holderName).join(' → ') : undefined}
                >
                  <td>
                    <code>{u.name}</code>
                  </td>
                  <td>
                    {u.holder ? <code>{u.holder}</code> : <span class="error">nobody</span>}
                    {move && <span class="failover"> {`moved: ${move.path.map(holderName).join(' → ')}`}</span>}
                  </td>
                  <td>{u.since ? time(u.since) : ''}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    </section>
  );
}

// ---------------------------------------------------------------------------------------

type Product = ConsoleProductsQuery['products']['edges'][number]['node'];
type Change = ConsoleProductTimelineQuery['productTimeline'][number];

function ProductChart({ live, token }: { live: Live; token: string }) {
  const [products, setProducts] = useState<Product[]>([]);
  const [id, setId] = useState<string>('');
  const [changes, setChanges] = useState<Change[]>([]);
  const load = () =>
    request(token, Products, {})
      .then((d) => setProducts(d.products.edges.map((e) => e.node)))
      .catch(() => {});
  useEffect(() => {
    void load();
  }, [token]);
  useEffect(() => {
    if (!id) {
      setChanges([]);
      return;
    }
    let position: string | undefined;
    let cancelled = false;
    // Every change of the product (pushed) reads its timeline again from the log.
    const stop = live.follow(
      ProductUpdated,
      () => ({ id, after: position ?? null }),
      ({ productUpdated: p }) => {
        if (!newer(p.position, position)) {
          return;
        }
        position = p.position;
        request(token, ProductTimeline, { id })
          .then((d) => !cancelled && setChanges(d.productTimeline))
          .catch(() => {});
      },
    );
    return () => {
      cancelled = true;
      stop();
    };
  }, [live, token, id]);
  const stock = changes.map((c) => ({ t: Date.parse(c.recordedAt), v: c.stock }));
  const price = changes.map((c) => ({ t: Date.parse(c.recordedAt), v: Number(c.price) }));
  return (
    <section class="panel product" aria-label="product over time">
      <h2>A product over time</h2>
      <select name="product" value={id} onFocus={load} onChange={(e) => setId((e.target as HTMLSelectElement).value)}>
        <option value="">choose a product…</option>
        {products.map((p) => (
          <option key={p.id} value={p.id}>
            {p.sku} · {p.name}
          </option>
        ))}
      </select>
      {id && (
        <div class="series" data-product={id} data-versions={changes.map((c) => c.version).join(' ')}>
          <h3>Stock</h3>
          <TimeChart points={stock} label="stock after each event" />
          <h3>Price</h3>
          <TimeChart points={price} label="price after each event" step />
          <p class="muted">
            The last {changes.length} events of the product, replayed from the log (<code>productTimeline</code>).
          </p>
        </div>
      )}
    </section>
  );
}

// ---------------------------------------------------------------------------------------

function Console({ token, onSignOut }: { token: string; onSignOut: (why: string | null) => void }) {
  const [connection, setConnection] = useState<Connection>('connecting');
  const [selected, setSelected] = useState<ConsoleOrderFragment | null>(null);
  const live = useMemo(() => new Live(token, setConnection, (err) => onSignOut(err.message)), [token]);
  useEffect(() => () => live.close(), [live]);
  // The details follow the feed: the selected order's newest state is the feed's.
  const select = (order: ConsoleOrderFragment) =>
    setSelected((current) => (current?.id === order.id && !newer(order.position, current.position) ? current : order));
  return (
    <>
      <header>
        <h1>ordergraph console</h1>
        <span class={`connection ${connection}`} data-testid="connection" data-state={connection}>
          {connection === 'live' ? 'live' : connection === 'connecting' ? 'connecting…' : 'reconnecting…'}
        </span>
        <button type="button" class="signout" onClick={() => onSignOut(null)}>
          Sign out
        </button>
      </header>
      <main>
        <Figures live={live} />
        <div class="columns">
          <Orders live={live} token={token} selected={selected?.id ?? null} onSelect={select} />
          {selected ? <OrderDetails token={token} order={selected} /> : <section class="panel details muted">Click an order for its details and history.</section>}
        </div>
        <Projections live={live} token={token} />
        <ClusterPanel live={live} />
        <ProductChart live={live} token={token} />
      </main>
    </>
  );
}

function App() {
  const [token, setToken] = useState<string | null>(() => sessionStorage.getItem(TOKEN_KEY));
  const [refusal, setRefusal] = useState<string | null>(null);
  if (!token) {
    return (
      <SignIn
        error={refusal}
        onToken={(t) => {
          sessionStorage.setItem(TOKEN_KEY, t);
          setRefusal(null);
          setToken(t);
        }}
      />
    );
  }
  return (
    <Console
      token={token}
      onSignOut={(why) => {
        sessionStorage.removeItem(TOKEN_KEY);
        setRefusal(why);
        setToken(null);
      }}
    />
  );
}

const root = document.getElementById('console');
if (root) {
  render(<App />, root);
}
