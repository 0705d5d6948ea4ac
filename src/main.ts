/**
 * The service's entry point (`npm start`, `node dist/src/main.js`). It checks the Node version
 * before anything else loads: the service needs Node 24 (`node:sqlite`), and on an older Node
 * its first import would fail with `No such built-in module` and no hint. So this file imports
 * nothing statically; the composition root is loaded only once the check has passed.
 */
export {};

const requiredMajor = 24;
const major = Number(process.versions.node.split(".")[0]);
if (!(major >= requiredMajor)) {
  process.stderr.write(
    `read-receipts needs Node ${requiredMajor} or later, not ${process.versions.node}: start it with \`npm start\` (npm scripts run the Node ${requiredMajor} of the project's node_modules) or node_modules/.bin/node dist/src/main.js\n`,
  );
  process.exit(2);
}
await import("./service-main.js");
