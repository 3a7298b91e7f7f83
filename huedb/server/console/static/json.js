// JSON that keeps integers exact. Metadata may hold 64-bit integers (nanosecond timestamps)
// that a JavaScript Number rounds: 1796434396980118951 would read as 1796434396980119000.
// API answers and the filter editor's text keep such integers as BigInt, written back digit
// for digit. Needs JSON.parse source text access and JSON.rawJSON (Chrome 114, Firefox 135,
// Safari 18.4); a browser without them gets an error instead of a rounded value.

const INTEGER_LITERAL = /^-?\d+$/;

const hasSourceText = (() => {
  let source;
  JSON.parse("1", (key, value, context) => {
    source = context?.source;
    return value;
  });
  return source === "1" && typeof JSON.rawJSON === "function";
})();

function unsupported(value) {
  return new Error(
    `This browser cannot keep the number ${value} exact (it lacks JSON.parse source text ` +
      "access: use Chrome 114, Firefox 135, Safari 18.4 or later).",
  );
}

/** JSON text -> value; an integer a Number cannot hold exactly becomes a BigInt. */
export function parseJson(text) {
  return JSON.parse(text, (key, value, context) => {
    if (typeof value !== "number" || Number.isSafeInteger(value) || !Number.isInteger(value)) {
      return value;
    }
    if (!hasSourceText) throw unsupported(value);
    return INTEGER_LITERAL.test(context.source) ? BigInt(context.source) : value;
  });
}

/** value -> JSON text; BigInts are written as their exact digits. */
export function stringifyJson(value) {
  return JSON.stringify(value, (key, item) =>
    typeof item === "bigint" ? JSON.rawJSON(item.toString()) : item,
  );
}
