"""`Collection`: Chroma's collection object, a thin handle over a `ServerAPI`."""

from __future__ import annotations

import sys
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np

from huedb.api import collection_config, collection_schema
from huedb.api import validation as v
from huedb.api.collection_search import request_body
from huedb.api.embedding_identity import check_embedding_function
from huedb.api.requests import DeleteRequest, GetRequest, ModifyCollectionRequest, QueryRequest
from huedb.api.types import (
    DEFAULT_GET_INCLUDE,
    DEFAULT_QUERY_INCLUDE,
    CollectionModel,
    DeleteResult,
    GetResult,
    IndexingStatus,
    QueryResult,
    Schema,
)
from huedb.embedding_functions import DefaultEmbeddingFunction
from huedb.errors import NotFoundError
from huedb.record_batch import RecordBatch, plain_metadatas
from huedb.search.direct import direct_request
from huedb.search.parse import as_json, finite_numbers
from huedb.search.result import SearchResult
from huedb.utils.embedding_functions import rebuild_embedding_function

if TYPE_CHECKING:
    from huedb.api.base import ServerAPI


class _DefaultEmbeddingFunction:
    """The `embedding_function` a collection gets when none is passed: chromadb's default
    (recorded as the known "default" function; huedb loads its own default model on use).
    Passing `embedding_function=None` instead means none of the handle's own: documents are
    embedded only by the function the collection records or its schema implies
    (`Collection._chosen_embedder`), as in chromadb."""

    @staticmethod
    def name() -> str:
        """The default function's name: a collection that recorded another one is not
        refused to a handle opened without one (`check_embedding_function`)."""
        return DefaultEmbeddingFunction.name()

    def get_config(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        return "DefaultEmbeddingFunction()"


DEFAULT_EMBEDDING_FUNCTION: Any = _DefaultEmbeddingFunction()

# The function a collection recording the default one reports (stateless, so one instance
# serves all: two default collections' configurations compare equal).
_DEFAULT_FUNCTION = DefaultEmbeddingFunction()

# The default of `include` in get and query: an explicit `include=None` is refused, as Chroma.
_DEFAULT_INCLUDE: Any = object()

NO_EMBEDDING_FUNCTION = (
    "You must provide an embedding function to compute embeddings."
    "https://docs.trychroma.com/guides/embeddings"
)


class Collection:
    """A named set of records with embeddings, documents, metadata and uris."""

    def __init__(
        self,
        client: ServerAPI,
        model: CollectionModel,
        embedding_function: Any = DEFAULT_EMBEDDING_FUNCTION,
        data_loader: Any = None,
        alias: str | None = None,
    ) -> None:
        self._client = client
        self._model = model
        self._embedding_function = embedding_function
        self._embedder: Any = None  # the function `_embed` uses, found on first use
        self._data_loader = data_loader
        self._alias = alias

    def _target_id(self) -> str:
        """The collection every data call goes to: an alias is resolved again on each call.

        When the alias now names another collection (switched to a new model version), the
        handle embeds with that collection's function from then on, and a function the
        handle was given that conflicts with it is refused, as `get_collection` refuses it:
        texts are never embedded with one model into another model's collection."""
        if self._alias is not None:
            resolved = self._client.get_collection(
                self._alias, self._model.tenant, self._model.database
            )
            if resolved.name == self._alias:  # a collection now holds the deleted alias's name
                raise NotFoundError(
                    f"Alias [{self._alias}] does not exist: it was deleted since this "
                    f"collection handle was opened through it (a collection named "
                    f"{self._alias!r} now exists; get_collection it to use that one)."
                )
            if resolved.id != self._model.id:
                check_embedding_function(resolved, self._embedding_function)
                self._embedder = None
            self._model = resolved
        return str(self._model.id)

    # -- properties --------------------------------------------------------------------

    @property
    def id(self) -> uuid.UUID:
        return self._model.id

    @property
    def name(self) -> str:
        return self._model.name

    @property
    def metadata(self) -> dict[str, Any] | None:
        return self._model.metadata

    @property
    def tenant(self) -> str:
        return self._model.tenant

    @property
    def database(self) -> str:
        return self._model.database

    @property
    def configuration_json(self) -> dict[str, Any]:
        return self._model.configuration_json

    @property
    def configuration(self) -> dict[str, Any]:
        """The configuration as chromadb's `collection.configuration`: the echoed JSON with
        the recorded embedding function rebuilt (`_recorded_embedding_function`)."""
        config = dict(self._model.configuration_json)
        config["embedding_function"] = self._recorded_embedding_function()
        return config

    @property
    def embedding_function(self) -> Any:
        return self._embedding_function

    @property
    def schema(self) -> Schema:
        """The collection's schema as a `Schema` object, as chromadb's `collection.schema`."""
        return Schema.deserialize_from_json(self._model.to_json()["schema"])

    def get_model(self) -> CollectionModel:
        """The collection as stored."""
        return self._model

    def __repr__(self) -> str:
        return f"Collection(name={self.name})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Collection) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    # -- writes ------------------------------------------------------------------------

    def add(
        self,
        ids: Any,
        embeddings: Any = None,
        metadatas: Any = None,
        documents: Any = None,
        images: Any = None,
        uris: Any = None,
    ) -> None:
        """Add records; ids that already exist are left unchanged."""
        self._write("add", ids, embeddings, metadatas, documents, images, uris)

    def upsert(
        self,
        ids: Any,
        embeddings: Any = None,
        metadatas: Any = None,
        documents: Any = None,
        images: Any = None,
        uris: Any = None,
    ) -> None:
        """Insert new ids and update existing ones (metadata merged key by key)."""
        self._write("upsert", ids, embeddings, metadatas, documents, images, uris)

    def update(
        self,
        ids: Any,
        embeddings: Any = None,
        metadatas: Any = None,
        documents: Any = None,
        images: Any = None,
        uris: Any = None,
    ) -> None:
        """Update existing records; missing ids are ignored."""
        self._write("update", ids, embeddings, metadatas, documents, images, uris)

    def delete(
        self,
        ids: Any = None,
        where: Any = None,
        where_document: Any = None,
        limit: int | None = None,
    ) -> DeleteResult:
        """Delete records by id and/or filter; returns {"deleted": n}."""
        with v.validation_context("delete"):
            if ids is None and where is None and where_document is None:
                raise ValueError("At least one of ids, where, or where_document must be provided")
            v.validate_delete_limit(limit)
            if limit is not None and where is None and where_document is None:
                raise ValueError(
                    "limit can only be specified when a where or where_document clause is provided"
                )
            id_list = None if ids is None else v.normalize_ids(ids)
            self._check_filters(where, where_document)
        request = DeleteRequest(id_list, where, where_document, limit)
        deleted = self._client.delete(self._target_id(), request)
        return DeleteResult(deleted=deleted)

    # -- reads -------------------------------------------------------------------------

    def count(self, read_level: Any = None) -> int:
        """Number of records."""
        return self._client.count(self._target_id())

    def fork(self, new_name: str) -> Collection:
        """A new collection `new_name` in this one's database with the same metadata,
        configuration and records as of one moment; later writes to either are independent."""
        model = self._client.fork_collection(self._target_id(), new_name)
        return Collection(self._client, model, self._embedding_function, self._data_loader)

    def fork_count(self) -> int:
        """The number of forks made in this collection's lineage tree: the same for the
        source and every fork (a fork of a fork counts too; deleting one does not uncount)."""
        return self._client.fork_count(self._target_id())

    def search(self, searches: Any, read_level: Any = None) -> SearchResult:
        """Run one `Search` or a list of them (string Knn queries embedded first); the
        results hold one entry per search, in order."""

        request = direct_request(searches, read_level)  # the usual shapes, without a body
        if request is not None and finite_numbers(request):
            return SearchResult.from_response(self._client.run_search(self._target_id(), request))

        def dense(text: str) -> list[float]:
            return self._embed([text], query=True)[0].tolist()

        # As JSON carries it (non-finite floats as null), in-process as over HTTP.
        body = as_json(request_body(searches, read_level, self._model.schema, dense))
        return SearchResult.from_response(self._client.search(self._target_id(), body))

    def get_indexing_status(self) -> IndexingStatus:
        """Whether this process's index serves the collection by graph yet (Chroma's API)."""
        return IndexingStatus(**self._client.indexing_status(self._target_id()))

    def get(
        self,
        ids: Any = None,
        where: Any = None,
        limit: int | None = None,
        offset: int | None = None,
        where_document: Any = None,
        include: Any = _DEFAULT_INCLUDE,
    ) -> GetResult:
        """Records by id and/or filter, in storage order."""
        with v.validation_context("get"):
            id_list = None if ids is None else v.normalize_ids(ids)
            self._check_filters(where, where_document)
            include = v.validate_include(
                DEFAULT_GET_INCLUDE if include is _DEFAULT_INCLUDE else include,
                allow_distances=False,
            )
            if "data" in include and self._data_loader is None:
                raise ValueError(
                    "You must set a data loader on the collection if loading from URIs."
                )
        # numpy integers as ints (JSON carries them); their range and type are the
        # server's to check, as chromadb's HTTP client leaves them (LocalAPI.get in-process)
        limit, offset = (int(n) if isinstance(n, np.integer) else n for n in (limit, offset))
        include, wire_include = _with_data(include)
        request = GetRequest(id_list, where, where_document, limit, offset, wire_include)
        result = self._client.get(self._target_id(), request)
        return self._finish(result, include, per_query=False)

    def peek(self, limit: int = 10) -> GetResult:
        """The first records with embeddings, metadatas and documents."""
        return self.get(limit=limit, include=["metadatas", "documents", "embeddings"])

    def query(
        self,
        query_embeddings: Any = None,
        query_texts: Any = None,
        query_images: Any = None,
        query_uris: Any = None,
        ids: Any = None,
        n_results: int = 10,
        where: Any = None,
        where_document: Any = None,
        include: Any = _DEFAULT_INCLUDE,
    ) -> QueryResult:
        """The n_results nearest records to each query, among those matching the filters."""
        with v.validation_context("query"):
            fields = {
                "embeddings": v.normalize_embeddings(query_embeddings),
                "documents": v.maybe_list(query_texts),
                "images": v.maybe_list(query_images),
                "uris": v.maybe_list(query_uris),
            }
            v.check_lengths(**fields)
            matrix = fields["embeddings"]
            v.check_documents(fields["documents"], nullable=matrix is not None)
            v.check_images(fields["images"])
            id_list = None if ids is None else v.normalize_query_ids(ids)
            self._check_filters(where, where_document)
            include = v.validate_include(
                DEFAULT_QUERY_INCLUDE if include is _DEFAULT_INCLUDE else include,
                allow_distances=True,
            )
            n_results = v.validate_n_results(n_results)
            matrix = v.uniform_embeddings(matrix)
            target = self._target_id()  # before embedding: the target's model embeds
            if matrix is None:
                embedded = self._embed_one_of(fields, {"documents", "images", "uris"}, query=True)
                matrix = v.uniform_embeddings(v.normalize_embeddings(embedded))
                assert matrix is not None
        v.finite_or_error(matrix)
        include, wire_include = _with_data(include)
        request = QueryRequest(matrix, n_results, id_list, where, where_document, wire_include)
        result = self._client.query(target, request)
        return self._finish(result, include, per_query=True)

    # -- collection changes ------------------------------------------------------------

    def modify(
        self,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        configuration: dict[str, Any] | None = None,
    ) -> None:
        """Rename, replace metadata, or change mutable configuration.

        As in Chroma, keys whose value is None are dropped from the new metadata, and an
        embedding function in `configuration` is recorded by its identity (name and
        config); `collection_config.client_update_request` lists the refusals.
        """
        if metadata is not None:
            # Chroma's client check (lists pass); the server checks the new name, then
            # what collection metadata may hold.
            v.validate_modify_metadata(metadata)
            if "hnsw:space" in metadata:
                raise ValueError(
                    "Changing the distance function of a collection once it is created is not "
                    "supported currently."
                )
        target = self._target_id()  # an alias's handle changes the collection it names now
        update = collection_config.client_update_request(
            configuration, self._model.configuration_json, self._model.schema
        )
        request = ModifyCollectionRequest(name, metadata, update)
        self._client.modify_collection(target, request)
        self._model = self._client.get_collection_by_id(target)
        self._embedder = None  # a changed embedding function is used from now on

    # -- helpers -----------------------------------------------------------------------

    @staticmethod
    def _check_filters(where: Any, where_document: Any) -> None:
        if where is not None:
            v.validate_where(where)
        if where_document is not None:
            v.validate_where_document(where_document)

    def _finish(self, result: Any, include: list[str], per_query: bool) -> Any:
        """Chroma's result shaping: data loaded from the uris (one list per query), the keys
        in the order chromadb's client of the same kind gives them (`ServerAPI`)."""
        result["included"] = list(include)
        result["metadatas"] = v.read_metadatas(result.get("metadatas"))
        uris = result.get("uris")
        if "data" in include and self._data_loader is not None and uris is not None:
            loader = self._data_loader
            result["data"] = [loader(u) for u in uris] if per_query else loader(uris)
        if "uris" not in include:
            result["uris"] = None
        keys = self._client.query_result_keys if per_query else self._client.get_result_keys
        ordered = {key: result[key] for key in keys if key in result}
        return ordered | {key: value for key, value in result.items() if key not in ordered}

    def _embed(self, inputs: list[Any] | None, query: bool = False) -> np.ndarray:
        if self._embedder is None:
            self._embedder = self._chosen_embedder()
        ef = self._embedder
        fn = getattr(ef, "embed_query", None) if query else None
        vectors = fn(inputs) if callable(fn) else ef(inputs)
        return np.asarray([np.asarray(x, dtype=np.float32) for x in vectors], dtype=np.float32)

    def _embed_one_of(
        self, fields: dict[str, Any], embeddable: set[str], query: bool = False
    ) -> np.ndarray:
        """Chroma's `_embed_record_set`: embed the one given field of `embeddable`, uris
        as the data the data loader reads for them. An error names the fields in the set's
        (hash) order, as Chroma's does."""
        given = [name for name in embeddable if fields[name] is not None]
        if len(given) != 1:
            raise ValueError(f"Exactly one of {', '.join(embeddable)} must be provided")
        inputs = fields[given[0]]
        if given[0] == "uris":
            if self._data_loader is None:
                raise ValueError(
                    "You must set a data loader on the collection if loading from URIs."
                )
            inputs = self._data_loader(uris=inputs)
        return self._embed(inputs, query=query)

    def _recorded_embedding_function(self) -> Any:
        """The embedding function the collection recorded, as chromadb rebuilds it: None
        when none (or a legacy one) is recorded; a known one by its registered class
        (`register_embedding_function` here or in chromadb), else this handle's own
        function of that name, else chromadb's ValueError (the class is not registered)."""
        recorded = self._recorded_known_function()
        if recorded is None:
            return None
        rebuilt = self._rebuilt(recorded)
        if rebuilt is not None:
            return rebuilt
        name, own = recorded.get("name"), self._embedding_function
        if own is not DEFAULT_EMBEDDING_FUNCTION and _function_name(own) == name:
            return own
        raise ValueError(
            f"Embedding function {name} not found. Add @register_embedding_function "
            "decorator to the class definition."
        )

    def _chosen_embedder(self) -> Any:
        """The function that embeds documents and query texts, in chromadb's order
        (`CollectionCommon._embed`): the handle's own, unless it is the default one; else
        the one the collection recorded (the default model for "default"; another known
        one rebuilt from its registered class, `register_embedding_function` here or in
        chromadb, else refused: embedding would mix models); else the function of the
        schema's vector index (`#embedding`'s, else the defaults'), which is the default
        model when the schema names none, as for a collection created with
        `embedding_function=None` and no configuration; else none when the handle was given
        `embedding_function=None` (ValueError, as chromadb); else the default model."""
        ef = self._embedding_function
        if ef is not None and not _is_default(ef):
            return ef
        recorded = self._recorded_known_function()
        if recorded is not None:
            rebuilt = self._rebuilt(recorded)
            if rebuilt is not None:
                return rebuilt
            raise ValueError(
                f"Collection {self.name} was built with the embedding function "
                f"'{recorded.get('name')}': pass it as embedding_function= to embed documents "
                "or query texts, or pass embeddings explicitly."
            )
        schema_function = collection_config.schema_embedding_function(self.schema)
        if schema_function is not None:
            return _DEFAULT_FUNCTION if _is_default(schema_function) else schema_function
        if ef is None:
            raise ValueError(NO_EMBEDDING_FUNCTION)
        return _DEFAULT_FUNCTION

    def _recorded_known_function(self) -> dict[str, Any] | None:
        """The recorded embedding function's configuration when it is a known one (None for
        none, legacy or unknown)."""
        recorded = (self._model.configuration_json or {}).get("embedding_function")
        if isinstance(recorded, dict) and recorded.get("type") == "known":
            return recorded
        return None

    @staticmethod
    def _rebuilt(recorded: dict[str, Any]) -> Any:
        """A known function rebuilt from its configuration: the default model for
        "default", its registered class's instance, or None when no class of that name is
        registered; a ValueError naming it when the class refuses the configuration."""
        name = recorded.get("name")
        if name == DefaultEmbeddingFunction.name():
            return _DEFAULT_FUNCTION
        try:
            return rebuild_embedding_function(recorded)
        except Exception as exc:
            raise ValueError(
                f"Could not build embedding function {name} from config "
                f"{recorded.get('config')}: {exc}"
            ) from exc

    def _write(
        self,
        op: str,
        ids: Any,
        embeddings: Any,
        metadatas: Any,
        documents: Any,
        images: Any,
        uris: Any,
    ) -> None:
        """Check and embed a write's records here, then send them as one `RecordBatch`."""
        target = self._target_id()  # before embedding: the target's model embeds
        with v.validation_context(op):
            batch = self._prepare(ids, embeddings, metadatas, documents, images, uris, op)
        getattr(self._client, op)(target, batch)

    def _prepare(
        self,
        ids: Any,
        embeddings: Any,
        metadatas: Any,
        documents: Any,
        images: Any,
        uris: Any,
        op: str,
    ) -> RecordBatch:
        # chromadb's order: the fields normalized (embeddings first), their lengths (named
        # in its order), then the ids' contents
        matrix = v.normalize_embeddings(embeddings)
        id_list = v.normalize_ids(ids, unique=False)
        metas = metadatas if metadatas is None else v.maybe_list_of_dicts(metadatas)
        docs = v.maybe_list(documents)
        uri_list = v.maybe_list(uris)
        imgs = v.maybe_list(images)
        v.check_lengths(
            ids=id_list,
            metadatas=metas,
            embeddings=matrix,
            documents=docs,
            images=imgs,
            uris=uri_list,
        )
        v.check_unique(id_list)
        if metas is not None and not plain_metadatas(metas):
            metas = [None if m is None else v.checked_metadata(m) for m in metas]
        v.check_documents(docs, nullable=matrix is not None)
        v.check_images(imgs)
        matrix = v.uniform_embeddings(matrix)
        if matrix is None:
            # Chroma embeds uris (through the data loader) on add only; an update without
            # documents or images keeps the stored embeddings.
            fields = {"documents": docs, "images": imgs, "uris": uri_list}
            if op == "add":
                matrix = self._embed_one_of(fields, {"documents", "images", "uris"})
            elif op == "upsert" or docs is not None or imgs is not None:
                matrix = self._embed_one_of(fields, {"documents", "images"})
        metas = collection_schema.sparse_embedded_metadatas(self._model.schema, metas, docs)
        return RecordBatch(id_list, matrix, metas, docs, uri_list)


def _is_default(function: Any) -> bool:
    """Whether a function is the default one (chromadb's `isinstance(ef,
    DefaultEmbeddingFunction)`): the handle's default, or an instance of huedb's or (when
    the program loaded it) chromadb's DefaultEmbeddingFunction."""
    if function is DEFAULT_EMBEDDING_FUNCTION or isinstance(function, DefaultEmbeddingFunction):
        return True
    chroma_default = getattr(
        sys.modules.get("chromadb.api.types"), "DefaultEmbeddingFunction", None
    )
    return isinstance(chroma_default, type) and isinstance(function, chroma_default)


def _function_name(function: Any) -> Any:
    """An embedding function's `name()`, None if it has none."""
    identity = collection_config.embedding_function_identity(function) or {}
    return identity.get("name")


def _with_data(include: list[str]) -> tuple[list[str], list[str]]:
    """The include a result reports, and the one sent to the engine: as in Chroma, "data"
    adds "uris" to both (the engine reads metadatas for it, as Chroma's does)."""
    if "data" not in include or "uris" in include:
        return include, include
    include = [*include, "uris"]
    return include, include
