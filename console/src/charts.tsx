// Small SVG charts, drawn by hand: a few dozen lines are less to keep current for years
// than a charting library, and they load nothing.

const WIDTH = 240;
const HEIGHT = 48;

function scale(values: readonly number[]): (v: number) => number {
  const min = Math.min(...values);
  const max = Math.max(...values);
  const span = max - min || 1;
  return (v) => HEIGHT - 4 - ((v - min) / span) * (HEIGHT - 8);
}

/** A line of the last values received, oldest left. */
export function Sparkline({ values, label }: { values: readonly number[]; label: string }) {
  if (values.length < 2) {
    return <svg class="spark" viewBox={`0 0 ${WIDTH} ${HEIGHT}`} role="img" aria-label={`${label}: not enough points yet`} />;
  }
  const y = scale(values);
  const step = WIDTH / (values.length - 1);
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
  return (
    <svg class="spark" viewBox={`0 0 ${WIDTH} ${HEIGHT}`} role="img" aria-label={label} data-points={values.length}>
      <polyline points={points} fill="none" stroke="currentColor" stroke-width="2" />
    </svg>
  );
}

/** Horizontal bars, one per item, lengths relative to the largest. */
export function Bars({ items }: { items: readonly { label: string; value: number }[] }) {
  const max = Math.max(1, ...items.map((i) => i.value));
  return (
    <div class="bars">
      {items.map((item) => (
        <div class="bar" key={item.label} data-status={item.label} data-count={item.value}>
          <span class="bar-label">{item.label}</span>
          <span class="bar-track">
            <span class={`bar-fill status-${item.label}`} style={{ width: `${(item.value / max) * 100}%` }} />
          </span>
          <span class="bar-value">{item.value}</span>
        </div>
      ))}
    </div>
  );
}

/** A time series as a line (`step`: held until the next point, as a price is). */
export function TimeChart({
  points,
  label,
  step = false,
}: {
  points: readonly { t: number; v: number }[];
  label: string;
  step?: boolean;
}) {
  const width = 480;
  const height = 120;
  if (points.length === 0) {
    return <p class="muted">No events yet.</p>;
  }
  const ts = points.map((p) => p.t);
  const vs = points.map((p) => p.v);
  const [t0, t1] = [Math.min(...ts), Math.max(...ts)];
  const [v0, v1] = [Math.min(0, ...vs), Math.max(...vs)];
  const x = (t: number) => 30 + ((t - t0) / (t1 - t0 || 1)) * (width - 40);
  const y = (v: number) => height - 16 - ((v - v0) / (v1 - v0 || 1)) * (height - 28);
  const path: string[] = [];
  points.forEach((p, i) => {
    const prev = points[i - 1];
    if (i === 0) {
      path.push(`M${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`);
    } else {
      if (step && prev) {
        path.push(`L${x(p.t).toFixed(1)},${y(prev.v).toFixed(1)}`);
      }
      path.push(`L${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`);
    }
  });
  return (
    <svg class="timechart" viewBox={`0 0 ${width} ${height}`} role="img" aria-label={label} data-points={points.length}>
      <text x="2" y="12" class="axis">{v1}</text>
      <text x="2" y={height - 16} class="axis">{v0}</text>
      <path d={path.join(' ')} fill="none" stroke="currentColor" stroke-width="2" />
      {points.map((p) => (
        <circle cx={x(p.t)} cy={y(p.v)} r="2.5" fill="currentColor" />
      ))}
    </svg>
  );
}
