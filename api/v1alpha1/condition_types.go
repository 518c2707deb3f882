package v1alpha1

// Condition types. Polarity: "normal-true" conditions are True when all is well;
// "abnormal-true" conditions are True only when something is wrong, and are removed
// (not set False) once it is mended.
const (
	// ConditionReady (normal-true) summarises the object: True when the ImportJob holds a
	// valid token for its workers (or, for an issuer, when the issuer is usable).
	ConditionReady = "Ready"
	// ConditionReconciling (abnormal-true) is True while the operator works towards the
	// desired state, for example while minting the first token.
	ConditionReconciling = "Reconciling"
	// ConditionStalled (abnormal-true) is True when the operator cannot go on without a
	// change to the spec or to a referenced Secret; it does not retry on its own.
	ConditionStalled = "Stalled"
	// ConditionCredentialsReady (normal-true) is True when the worker Secret holds an
	// access token that is valid now.
	ConditionCredentialsReady = "CredentialsReady"
	// ConditionTokenRefreshFailed (abnormal-true) is True while rotations fail and are
	// being retried; the old token keeps being served while it is valid.
	ConditionTokenRefreshFailed = "TokenRefreshFailed"
	// ConditionCredentialsLost (abnormal-true) is True when the job's refresh chain is
	// dead and its grant cannot mint a new pair: the job will get no further tokens.
	ConditionCredentialsLost = "CredentialsLost"
	// ConditionSessionExpiring (abnormal-true) is True when the issuer's session maximum
	// will end the refresh chain before the job ends and the grant cannot re-mint.
	ConditionSessionExpiring = "SessionExpiring"
	// ConditionRevoked (normal-true once the job ended) is True when every token of the
	// job was revoked at the issuer and the Secrets were deleted.
	ConditionRevoked = "Revoked"
	// ConditionRevocationFailed (abnormal-true) is True when revocation did not succeed
	// within its budget; the tokens expire on their own at their expiry time.
	ConditionRevocationFailed = "RevocationFailed"
	// ConditionPropagationBudgetUnmet (abnormal-true) is True when the issuer's token
	// lifetime is shorter than the propagation budget, so workers may briefly read an
	// expired token; the operator rotates as early as it can.
	ConditionPropagationBudgetUnmet = "PropagationBudgetUnmet"
	// ConditionTokenFileUnreadable (abnormal-true) is True when a container of the
	// template runs as a non-root user in a pod without fsGroup, so it cannot read the
	// token files (owned by root, mode 0400); absent otherwise.
	ConditionTokenFileUnreadable = "TokenFileUnreadable"
	// ConditionInsecureTransport (abnormal-true, on issuers) is True while the issuer
	// allows credentials and tokens over plain http (spec.insecureAllowPlainHTTP); it is
	// absent otherwise.
	ConditionInsecureTransport = "InsecureTransport"
)

// Condition reasons.
const (
	ReasonSucceeded             = "Succeeded"
	ReasonProgressing           = "Progressing"
	ReasonMinting               = "Minting"
	ReasonMinted                = "Minted"
	ReasonRotated               = "Rotated"
	ReasonReminted              = "Reminted"
	ReasonIssuerNotFound        = "IssuerNotFound"
	ReasonIssuerNotReady        = "IssuerNotReady"
	ReasonInvalidSpec           = "InvalidSpec"
	ReasonSecretNotFound        = "SecretNotFound"
	ReasonSecretKeyMissing      = "SecretKeyMissing"
	ReasonDiscoveryFailed       = "DiscoveryFailed"
	ReasonIssuerUnavailable     = "IssuerUnavailable"
	ReasonIssuerConfiguration   = "IssuerConfiguration"
	ReasonDeadChain             = "DeadChain"
	ReasonOutcomeUnknown        = "OutcomeUnknown"
	ReasonSessionMaximum        = "SessionMaximum"
	ReasonJobSucceeded          = "JobSucceeded"
	ReasonJobFailed             = "JobFailed"
	ReasonMaxLifetimeReached    = "MaxLifetimeReached"
	ReasonDeleted               = "Deleted"
	ReasonRevocationBudgetSpent = "RevocationBudgetSpent"
	ReasonTokenLifetimeTooShort = "TokenLifetimeTooShort"
	// ReasonIssuerChanged (Stalled, Revoked=False): the issuer the ImportJob names now is
	// not the one that minted its refresh chain (another kind, namespace or name, or the
	// same name re-created with a new UID); the chain is never sent to it.
	ReasonIssuerChanged = "IssuerChanged"
	// ReasonNameConflict (Stalled): an object the operator would create for the job (the
	// worker Secret <name>-token or the batch Job <name>) exists and is not controlled by
	// this ImportJob; the operator never adopts or overwrites it.
	ReasonNameConflict = "NameConflict"
	// ReasonIssuerNotAllowed (Stalled): the ClusterTokenIssuer the ImportJob names does not
	// allow its namespace or grant, or the job asks for scopes or audiences beyond the
	// issuer's ceiling; nothing is sent to the issuer.
	ReasonIssuerNotAllowed = "IssuerNotAllowed"
	// ReasonSecretNotAllowed (Ready=False on issuers, Reconciling on ImportJobs): a Secret
	// reference names one of the operator's stored token chains, which is never an input.
	ReasonSecretNotAllowed = "SecretNotAllowed"
	// ReasonNoFSGroup (TokenFileUnreadable=True): a non-root container in a pod without fsGroup.
	ReasonNoFSGroup = "NoFSGroup"
	// ReasonIssuerBusy (Reconciling): the issuer's limit of concurrent token requests or
	// its request rate is reached; the job tries again shortly.
	ReasonIssuerBusy = "IssuerBusy"
	// ReasonPlainHTTPAllowed (InsecureTransport=True): spec.insecureAllowPlainHTTP is set.
	ReasonPlainHTTPAllowed = "PlainHTTPAllowed"
	// ReasonInvalidCABundle (Ready=False on issuers): the CA bundle holds no PEM certificate.
	ReasonInvalidCABundle = "InvalidCABundle"
)
