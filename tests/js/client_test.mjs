// The official chromadb JavaScript client against a huedb server (run by tests/test_js_client.py).
// Usage: node client_test.mjs <port> <token> <wrong-token>; prints one JSON line of results.
import { ChromaClient } from "chromadb";

const [port, token, wrongToken] = process.argv.slice(2);
const client = (t) =>
  new ChromaClient({ host: "127.0.0.1", port: Number(port), headers: { Authorization: `Bearer ${t}` } });

const chroma = client(token);
const collection = await chroma.createCollection({
  name: "js-client",
  metadata: { source: "js" },
  embeddingFunction: null,
});
await collection.add({
  ids: ["a", "b", "c"],
  embeddings: [[1, 0], [0, 1], [0.9, 0.1]],
  metadatas: [{ kind: "x" }, { kind: "y" }, { kind: "x" }],
  documents: ["alpha", "beta", "gamma"],
});
const query = await collection.query({ queryEmbeddings: [[1, 0]], nResults: 2, where: { kind: "x" } });
const got = await collection.get({ where: { kind: "x" }, include: ["documents", "metadatas"] });
await collection.delete({ ids: ["c"] });
const count = await collection.count();
const reopened = await chroma.getCollection({ name: "js-client", embeddingFunction: null });

let refused = null;
try {
  await client(wrongToken).listCollections();
} catch (error) {
  refused = { name: error.name, message: String(error.message) };
}

console.log(
  JSON.stringify({
    queryIds: query.ids,
    queryDistances: query.distances,
    getIds: got.ids,
    getDocuments: got.documents,
    count,
    reopenedCount: await reopened.count(),
    reopenedMetadata: reopened.metadata,
    refused,
  }),
);
