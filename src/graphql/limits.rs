//! Bounds on the work one GraphQL document may cause, checked before async-graphql
//! validates it.
//!
//! async-graphql validates a document by walking it with every fragment spread expanded
//! in place, and so do its recursion-depth and directive checks, which run before the
//! depth and complexity limits are known. A document whose fragments each spread the
//! previous one twice (`fragment F1 on Query { ...F0 ...F0 } … query { ...F30 }`) is 1 KB
//! of text and 2^30 selections to walk: it held a core and gigabytes of memory for
//! minutes, and the request timeout never fired because validation never yields.
//!
//! So every document is measured first, in time linear in its size: the number of
//! selections, argument values and directives the validator will visit, counting a
//! fragment once per spread that reaches it (memoised per fragment, so the count itself
//! never expands anything). A document above the limit, or one whose fragments form a
//! cycle, is refused with `BAD_USER_INPUT` before any expanding walk starts. Whatever
//! passes is bounded work for validation and execution alike.
//!
//! Parsing is linear too, but costs time and memory: the parser holds about 120 bytes
//! per byte of document while it works (a 410 KB document took 50 MB). So a document is
//! refused unparsed when it is longer than [`DocumentLimits::max_bytes`] or has more
//! than [`DocumentLimits::max_tokens`] tokens (counted by a scan that allocates nothing;
//! graphql-js offers the same `maxTokens` bound). Documents that are large but within
//! the limits are parsed and measured on the blocking pool, so that no request holds an
//! async worker thread for long, and at most one per core at a time, so that the memory
//! parsing takes stays bounded however many arrive at once.
//!
//! The same step of the request pipeline (`pipeline.rs`) enforces the depth and
//! complexity limits after validation has measured them (async-graphql's own limits
//! refuse with "Query is too complex." and name neither the limit nor the query's value,
//! which a client needs to fix its query), and charges each operation of an HTTP batch
//! to the batch's shared complexity budget ([`BatchBudget`]): the per-operation
//! complexity limit alone let one request of many operations do unbounded work.
//!
//! A syntax error's message is made one line: the parser's is a multi-line drawing of
//! the offending line with a caret, which clients show as one garbled line of text (the
//! position is in the error's `locations` anyway).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;

use async_graphql::extensions::ExtensionContext;
use async_graphql::parser::types::{
    Directive, ExecutableDocument, FragmentDefinition, Selection, SelectionSet,
};
use async_graphql::{
    Name, Positioned, Request, ServerError, ServerResult, ValidationResult, Variables,
};
use async_graphql_value::{ConstValue, Value};

/// Documents longer than this are parsed on the blocking pool rather than inline: below
/// it, parsing takes microseconds and a thread hop would cost more than it saves.
const PARSE_INLINE_BYTES: usize = 16 * 1024;

/// The limits this step of the request pipeline (`pipeline.rs`) enforces.
#[derive(Debug, Clone)]
pub struct DocumentLimits {
    /// Longest document, in bytes (parsing is refused past it).
    pub max_bytes: usize,
    /// Most lexical tokens a document may have (parsing is refused past it).
    pub max_tokens: usize,
    /// Most nodes (selections, argument values, directives) a document may make the
    /// validator visit, fragments expanded.
    pub max_nodes: usize,
    /// Large documents parsed at once (one per core).
    parsing: Arc<Semaphore>,
}

impl DocumentLimits {
    pub fn new(max_bytes: usize, max_tokens: usize, max_nodes: usize) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            max_bytes,
            max_tokens,
            max_nodes,
            parsing: Arc::new(Semaphore::new(cores)),
        }
    }
}

/// The complexity every operation of one batch request may spend together. Attached to
/// each operation of a batch as request data; [`check_validated`] charges it.
#[derive(Debug)]
pub struct BatchBudget {
    limit: usize,
    spent: AtomicUsize,
}

impl BatchBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            spent: AtomicUsize::new(0),
        })
    }

    /// Spends `complexity`; an error when the batch would go over its budget.
    fn charge(&self, complexity: usize) -> ServerResult<()> {
        let before = self.spent.fetch_add(complexity, Ordering::Relaxed);
        let after = before.saturating_add(complexity);
        if after > self.limit {
            return Err(bad_request(format!(
                "the batch is too complex: its operations add up to a complexity of more than {} (at least {after}); send fewer or smaller operations",
                self.limit
            )));
        }
        Ok(())
    }
}

fn bad_request(message: String) -> ServerError {
    super::error::request_error(message, "BAD_USER_INPUT")
}

/// Refuses a document that validated but is nested deeper or is more complex than the
/// limits allow, or whose complexity goes over its batch's budget ([`BatchBudget`], in
/// the request's data).
pub(super) fn check_validated(
    ctx: &ExtensionContext<'_>,
    result: ValidationResult,
) -> Result<ValidationResult, Vec<ServerError>> {
    let (max_depth, max_complexity) = (crate::graphql::MAX_DEPTH, crate::graphql::MAX_COMPLEXITY);
    if result.depth > max_depth {
        return Err(vec![bad_request(format!(
            "the query is nested {} levels deep, and at most {max_depth} are allowed",
            result.depth
        ))]);
    }
    if result.complexity > max_complexity {
        return Err(vec![bad_request(format!(
            "the query's complexity is {}, and at most {max_complexity} is allowed (each field counts 1, a list field `first` times its selection): select fewer fields or smaller pages",
            result.complexity
        ))]);
    }
    if let Some(budget) = ctx.data_opt::<Arc<BatchBudget>>() {
        budget.charge(result.complexity).map_err(|e| vec![e])?;
    }
    Ok(result)
}

/// Parses the request's document, unless it already was, and refuses it when it is over
/// the limits. The parsed document stays in the request, so async-graphql (or the
/// transport, which looks at the operation's type) does not parse it again. Large
/// documents are handled on the blocking pool.
pub async fn prepare(request: Request, limits: &DocumentLimits) -> ServerResult<Request> {
    if request.query.len() > limits.max_bytes {
        return Err(bad_request(format!(
            "the document is too large: it is longer than {} bytes",
            limits.max_bytes
        )));
    }
    if request.query.len() <= PARSE_INLINE_BYTES {
        return measured(request, limits.max_tokens, limits.max_nodes);
    }
    let _permit = limits
        .parsing
        .acquire()
        .await
        .map_err(|e| ServerError::new(format!("parsing is shut down: {e}"), None))?;
    let (max_tokens, max_nodes) = (limits.max_tokens, limits.max_nodes);
    tokio::task::spawn_blocking(move || measured(request, max_tokens, max_nodes))
        .await
        .map_err(|e| ServerError::new(format!("parsing was interrupted: {e}"), None))?
}

fn measured(mut request: Request, max_tokens: usize, max_nodes: usize) -> ServerResult<Request> {
    let tokens = count_tokens(&request.query, max_tokens);
    if tokens > max_tokens {
        return Err(bad_request(format!(
            "the document is too large: it has more than {max_tokens} tokens"
        )));
    }
    let variables = std::mem::take(&mut request.variables);
    let nodes = request
        .parsed_query()
        .map(|doc| document_nodes(doc, &variables));
    request.variables = variables;
    match nodes.map_err(one_line)? {
        Ok(nodes) if nodes <= max_nodes => Ok(request),
        Ok(nodes) => Err(bad_request(format!(
            "the document is too large: validating it would visit {nodes} selections, arguments and directives once its fragments are expanded, and at most {max_nodes} are allowed"
        ))),
        Err(FragmentCycle(name)) => Err(bad_request(format!(
            "fragment \"{name}\" spreads itself (directly or through other fragments)"
        ))),
    }
}

/// A parse error with its message on one line: pest draws the offending line with a
/// caret under the position and ends with `= expected …`; keep that explanation and say
/// where (`locations` has the position too).
fn one_line(mut error: ServerError) -> ServerError {
    if !error.message.contains('\n') {
        return error;
    }
    let explanation: Vec<&str> = error
        .message
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("= "))
        .collect();
    let at = error
        .locations
        .first()
        .map(|pos| format!(" at line {}, column {}", pos.line, pos.column))
        .unwrap_or_default();
    error.message = if explanation.is_empty() {
        format!("syntax error{at}")
    } else {
        format!("syntax error{at}: {}", explanation.join("; "))
    };
    error
}

/// The lexical tokens of a GraphQL document (spec §2.1.6: punctuators, names, numbers,
/// strings; whitespace, commas and comments are ignored), counted up to `stop` and no
/// further. Malformed input is counted byte by byte: the parser reports it.
pub fn count_tokens(query: &str, stop: usize) -> usize {
    let bytes = query.as_bytes();
    let mut i = 0;
    let mut tokens = 0;
    while i < bytes.len() && tokens <= stop {
        match bytes[i] {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => i += 1,
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    i += if bytes[i..].starts_with(b"\\\"\"\"") {
                        4
                    } else {
                        1
                    };
                }
                i += 3;
                tokens += 1;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                tokens += 1;
            }
            b'.' => {
                while i < bytes.len() && bytes[i] == b'.' {
                    i += 1;
                }
                tokens += 1;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric()
                        || matches!(bytes[i], b'_' | b'-' | b'+' | b'.'))
                {
                    i += 1;
                }
                tokens += 1;
            }
            _ => {
                i += 1;
                tokens += 1;
            }
        }
    }
    tokens
}

/// A fragment that spreads itself, directly or not (the GraphQL spec forbids it,
/// §5.5.2.2, and counting it would never end).
#[derive(Debug, PartialEq, Eq)]
pub struct FragmentCycle(pub String);

/// The nodes the validator visits in `doc`: every operation and every fragment
/// definition, each with its fragment spreads expanded. Linear in the document's size:
/// each fragment is counted once and its count reused at every spread. Saturates at
/// `usize::MAX` instead of overflowing.
pub fn document_nodes(
    doc: &ExecutableDocument,
    variables: &Variables,
) -> Result<usize, FragmentCycle> {
    let mut counter = Counter {
        fragments: &doc.fragments,
        variables,
        done: HashMap::new(),
        in_progress: Vec::new(),
    };
    let mut total: usize = 0;
    for (_, operation) in doc.operations.iter() {
        let op = &operation.node;
        let mut nodes = counter.directives(&op.directives);
        for definition in &op.variable_definitions {
            nodes = nodes.saturating_add(1);
            if let Some(default) = &definition.node.default_value {
                nodes = nodes.saturating_add(const_value_nodes(&default.node));
            }
        }
        nodes = nodes.saturating_add(counter.selection_set(&op.selection_set.node)?);
        total = total.saturating_add(nodes);
    }
    for name in doc.fragments.keys() {
        total = total.saturating_add(counter.fragment(name)?);
    }
    Ok(total)
}

struct Counter<'a> {
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    variables: &'a Variables,
    /// Fragments already counted.
    done: HashMap<&'a str, usize>,
    /// Fragments being counted, to detect a cycle.
    in_progress: Vec<&'a str>,
}

impl<'a> Counter<'a> {
    fn fragment(&mut self, name: &'a str) -> Result<usize, FragmentCycle> {
        if let Some(n) = self.done.get(name) {
            return Ok(*n);
        }
        let Some(fragment) = self.fragments.get(name) else {
            // Unknown: the validator reports it without walking anything.
            return Ok(0);
        };
        if self.in_progress.contains(&name) {
            return Err(FragmentCycle(name.to_owned()));
        }
        self.in_progress.push(name);
        let nodes = self
            .directives(&fragment.node.directives)
            .saturating_add(self.selection_set(&fragment.node.selection_set.node)?);
        self.in_progress.pop();
        self.done.insert(name, nodes);
        Ok(nodes)
    }

    fn selection_set(&mut self, set: &'a SelectionSet) -> Result<usize, FragmentCycle> {
        let mut nodes: usize = 0;
        for selection in &set.items {
            let n = match &selection.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let mut n = 1usize.saturating_add(self.directives(&field.directives));
                    for (_, value) in &field.arguments {
                        n = n.saturating_add(self.value(&value.node));
                    }
                    n.saturating_add(self.selection_set(&field.selection_set.node)?)
                }
                Selection::FragmentSpread(spread) => {
                    let spread = &spread.node;
                    1usize
                        .saturating_add(self.directives(&spread.directives))
                        .saturating_add(self.fragment(spread.fragment_name.node.as_str())?)
                }
                Selection::InlineFragment(inline) => {
                    let inline = &inline.node;
                    1usize
                        .saturating_add(self.directives(&inline.directives))
                        .saturating_add(self.selection_set(&inline.selection_set.node)?)
                }
            };
            nodes = nodes.saturating_add(n);
        }
        Ok(nodes)
    }

    fn directives(&self, directives: &[Positioned<Directive>]) -> usize {
        directives.iter().fold(0usize, |n, d| {
            d.node
                .arguments
                .iter()
                .fold(n.saturating_add(1), |n, (_, v)| {
                    n.saturating_add(self.value(&v.node))
                })
        })
    }

    /// An argument value: a variable counts as the value it stands for, since the
    /// validator checks the variable's value at each place it is used.
    fn value(&self, value: &Value) -> usize {
        match value {
            Value::Variable(name) => {
                1usize.saturating_add(self.variables.get(name).map_or(0, const_value_nodes))
            }
            Value::String(s) => string_nodes(s),
            Value::List(items) => items
                .iter()
                .fold(1usize, |n, v| n.saturating_add(self.value(v))),
            Value::Object(fields) => fields
                .values()
                .fold(1usize, |n, v| n.saturating_add(self.value(v))),
            _ => 1,
        }
    }
}

/// A string costs one node per 64 bytes: checking it (a UUID, a decimal, a name) and
/// copying it are linear in its length.
fn string_nodes(s: &str) -> usize {
    1 + s.len() / 64
}

fn const_value_nodes(value: &ConstValue) -> usize {
    match value {
        ConstValue::String(s) => string_nodes(s),
        ConstValue::List(items) => items
            .iter()
            .fold(1usize, |n, v| n.saturating_add(const_value_nodes(v))),
        ConstValue::Object(fields) => fields
            .values()
            .fold(1usize, |n, v| n.saturating_add(const_value_nodes(v))),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(query: &str) -> Result<usize, FragmentCycle> {
        let doc = async_graphql::parser::parse_query(query).unwrap();
        document_nodes(&doc, &Variables::default())
    }

    /// `levels` fragments, each spreading the previous one twice.
    fn fragment_bomb(levels: usize) -> String {
        let mut q = String::from("query { ...F0 }\nfragment F0 on Query { __typename }\n");
        for i in 1..=levels {
            q.push_str(&format!(
                "fragment F{i} on Query {{ ...F{p} ...F{p} }}\n",
                p = i - 1
            ));
        }
        q.replace("query { ...F0 }", &format!("query {{ ...F{levels} }}"))
    }

    #[test]
    fn a_plain_query_counts_its_fields_and_arguments() {
        // products(1 + first 1) + edges + node + id + name
        assert_eq!(
            nodes("{ products(first: 5) { edges { node { id name } } } }"),
            Ok(6)
        );
    }

    #[test]
    fn each_spread_counts_its_fragment_again_without_expanding_it() {
        // The operation: 2 spreads + 2 × F's 2 fields; the definition of F: 2 fields.
        assert_eq!(
            nodes("{ ...F ...F } fragment F on Query { a: __typename b: __typename }"),
            Ok(2 + 4 + 2)
        );
    }

    #[test]
    fn a_fragment_bomb_is_counted_in_linear_time_and_saturates() {
        let n = nodes(&fragment_bomb(20)).unwrap();
        assert!(n > 1 << 20, "{n}");
        // 200 levels would be 2^200 selections: the count saturates instead of overflowing.
        assert_eq!(nodes(&fragment_bomb(200)), Ok(usize::MAX));
    }

    #[test]
    fn a_fragment_cycle_is_reported_instead_of_counted() {
        let cycle =
            nodes("{ ...A } fragment A on Query { ...B } fragment B on Query { ...A ...A }");
        assert!(matches!(cycle, Err(FragmentCycle(name)) if name == "A" || name == "B"));
        assert_eq!(
            nodes("{ ...A } fragment A on Query { __typename ...A }"),
            Err(FragmentCycle("A".into()))
        );
    }

    #[test]
    fn a_variable_counts_as_the_value_it_stands_for() {
        let doc = async_graphql::parser::parse_query(
            "query ($ids: [UUID!]) { a: productUpdated(ids: $ids) { id } }",
        )
        .unwrap();
        let ids: Vec<serde_json::Value> = (0..100).map(|i| i.to_string().into()).collect();
        let variables = Variables::from_json(serde_json::json!({ "ids": ids }));
        let with = document_nodes(&doc, &variables).unwrap();
        let without = document_nodes(&doc, &Variables::default()).unwrap();
        assert_eq!(with - without, 101);
    }

    #[test]
    fn the_standard_introspection_query_is_far_below_the_default_limits() {
        let n = nodes(INTROSPECTION).unwrap();
        assert!(n < 1_000, "{n}");
        // graphql-js's own lexer counts 155 tokens here (and 163 in graphql-js 16's
        // `getIntrospectionQuery()`): the count agrees with the reference, and the
        // default limit of 20 000 is two orders of magnitude away.
        let tokens = count_tokens(INTROSPECTION, usize::MAX);
        assert_eq!(tokens, 155);
    }

    #[test]
    fn tokens_are_counted_as_the_spec_defines_them() {
        assert_eq!(count_tokens("{ a(b: \"c d, e\") { ...F } }", 100), 12);
        assert_eq!(count_tokens("# a comment { } \n{ a, b, c }", 100), 5);
        assert_eq!(
            count_tokens("{ a(b: \"\"\" x \\\"\"\" { } \"\"\", c: -1.5e3) }", 100),
            11
        );
        // Counting stops past the bound: a huge document costs no more than that.
        assert_eq!(count_tokens(&"{ a }".repeat(1_000_000), 10), 11);
    }

    proptest::proptest! {
        /// Whatever the input, the count terminates and never exceeds the input's length
        /// (the bound holds for hostile text too).
        #[test]
        fn counting_tokens_is_total_and_bounded(s in ".{0,200}") {
            proptest::prop_assert!(count_tokens(&s, usize::MAX) <= s.len());
        }
    }

    /// The introspection query GraphiQL and the code generators send.
    const INTROSPECTION: &str = r#"
    query IntrospectionQuery {
      __schema {
        queryType { name } mutationType { name } subscriptionType { name }
        types { ...FullType }
        directives { name description locations args { ...InputValue } }
      }
    }
    fragment FullType on __Type {
      kind name description
      fields(includeDeprecated: true) {
        name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason
      }
      inputFields { ...InputValue }
      interfaces { ...TypeRef }
      enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
      possibleTypes { ...TypeRef }
    }
    fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
    fragment TypeRef on __Type {
      kind name
      ofType { kind name ofType { kind name ofType { kind name ofType { kind name
        ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }
    }
    "#;
}
