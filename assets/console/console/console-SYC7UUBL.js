var k,Ke,sn,Y,Se,ve,Ye,_e,Xe,Re,Te,an,de=Symbol.for("pv"),xe={},Ce=[],ln=/^m(i|n|o|s|text|space)$/,Ee=Array.isArray,Ze=Ce.slice,oe=Object.assign;function ne(e){e&&e.parentNode&&e.remove()}function he(e,t,n,s,i){var a={type:e,props:t,key:n,ref:s,__k:null,__:null,__b:0,__e:null,__c:null,constructor:de,__v:i||++Ke,__i:-1,__u:0};return!i&&k.vnode&&k.vnode(a),a}function J(e){return e.children}function ye(e,t){this.props=e,this.context=t,this.__g=0}function X(e,t){if(t==null)return e.__&&X(e.__,e.__i+1);for(var n;t<e.__k.length;t++)if((n=e.__k[t])&&n.__e)return n.__e;return typeof e.type!="function"||e.props.__P?null:X(e)}function dn(e){var t,n=e.__v,s=n.__e,i=[],a=[],l=e.__P;l&&((t=oe({constructor:de},n)).__v=n.__v+1,k.vnode&&k.vnode(t),$e(l,t,n,e.__n,l.namespaceURI,32&n.__u?[s]:null,i,s||X(n),32&n.__u,a),t.__v=n.__v,t.__.__k[t.__i]=t,st(i,t,a),n.__=n.__e=null,t.__e!=s&&et(t))}function et(e){if((e=e.__)&&e.__c&&!e.props.__P)return e.__e=null,e.__k.some(function(t){return t&&(e.__e=t.__e)}),et(e)}function Qe(e){(8&e.__g||(e.__g|=8,Y.push(e),ve++))&&Se==k.debounceRendering||((Se=k.debounceRendering)||queueMicrotask)(tt)}function tt(){try{for(var e,t=1;Y.length;)Y.length>t&&Y.sort(Ye),e=Y.shift(),t=Y.length,8&e.__g&&dn(e)}finally{(ve=Y.length)&&(Se||queueMicrotask)(tt)}}function nt(e,t,n,s,i,a,l,c,m,p,d){var u,f,r,g,b,_,v=s.__k||Ce,h=t.length;for(m=cn(n,t,v,m,h),u=0;u<h;u++)(r=n.__k[u])!=null&&(f=~r.__i&&v[r.__i]||xe,r.__i=u,_=$e(e,r,f,i,a,l,c,m,p,d),g=r.__e,(f.ref!=r.ref||8&f.__u)&&(f.ref&&Oe(f.ref,null,r,f),r.ref&&d.push(r.ref,r.__c||g,r)),b=b||g,4&r.__u?(m=ot(r,m,e,!f.__v),f.__e&&(f.__e=null)):typeof r.type=="function"&&_!==void 0?m=_:g&&(m=g.nextSibling),r.__u&=-21);return n.__e=b,m}function cn(e,t,n,s,i){var a,l,c,m,p,d,u,f,r,g=n.length,b=g,_=0,v=0,h=e.__k=Array(i);for(a=0;a<i;a++)(l=t[a])!=null&&typeof l!="boolean"&&typeof l!="function"?(typeof l!="object"||l.constructor===String?l=h[a]=he(null,l):Ee(l)?l=h[a]=he(J,{children:l}):l.constructor===de&&l.__b?l=h[a]=he(l.type,l.props,l.key,l.ref,l.__v):h[a]=l,m=a+_,l.__=e,l.__b=e.__b+1,c=null,~(p=l.__i=un(l,n,m,b))&&(b--,(c=n[p])&&(c.__u|=2)),c&&c.__v?(l.__u|=16,p==m-1?_--:p==m+1?_++:p!=m&&(p>m?_--:_++,v=1)):(~p||(i>g?_--:i<g&&_++),typeof l.type!="function"&&(l.__u|=4))):h[a]=null;if(v){for(d=[],u=[],a=0;a<i;a++)if((l=h[a])&&16&l.__u){for(_=0,f=d.length;_<f;)d[r=_+f>>1]<l.__i?_=r+1:f=r;d[_]=l.__i,u[a]=_+1}for(_=d.length;a--;)u[a]&&(u[a]==_?_--:h[a].__u|=4)}if(b)for(a=0;a<g;a++)!(c=n[a])||2&c.__u||(c.__e==s&&(s=X(c)),Ae(c,c));return s}function ot(e,t,n,s){var i,a,l,c;if(typeof e.type=="function"){if(e.props.__P)return t;if(i=e.__k)for(a=0;a<i.length;a++)i[a]&&(i[a].__=e,t=ot(i[a],t,n,!1));return t}for(t&&!t.parentNode&&(t=X(e))&&!t.parentNode&&(t=null),l=e.__e,c=t;c&&c.nodeType==8;)c=c.nextSibling;for(l!=c&&(!s&&n.moveBefore&&l.parentNode?n.moveBefore(l,t):n.insertBefore(l,t||null)),t=l;(t=t&&t.nextSibling)&&t.nodeType==8&&!t.data.startsWith("$s"););return t}function un(e,t,n,s){var i,a=e.key,l=e.type,c=t[n],m=c&&!(2&c.__u);if(c===null&&a==null||m&&a==c.key&&l==c.type)return n;if(s>(m?1:0)){for(i=n-1;i>=0;i--)if((c=t[i])&&!(2&c.__u)&&a==c.key&&l==c.type)return i;for(i=n+1;i<t.length;i++)if((c=t[i])&&!(2&c.__u)&&a==c.key&&l==c.type)return i}return-1}function Je(e,t,n){n==null&&(n=""),t[0]=="-"?e.setProperty(t,n):e[t]=n}function ge(e,t,n,s,i){var a,l;if(t=="style")if(typeof n=="string")e.style.cssText=n;else{if(typeof s=="string"&&(e.style.cssText=s=""),s)for(t in s)n&&t in n||Je(e.style,t);if(n)for(t in n)s&&n[t]==s[t]||Je(e.style,t,n[t])}else if(t[0]=="o"&&t[1]=="n")typeof n!="function"&&(n=null),typeof s!="function"&&(s=null),(e.__e||(e.__e={}))[t]=n,n&&s||(l=Te[t]||(Te[t]=pn(t)),(e.__a||(e.__a={}))[t]=Re,a=t!=(t=t.replace(Xe,"$1")),(t=t.slice(2))[0]<"a"&&(t=t.toLowerCase()),n?e.addEventListener(t,l,a):e.removeEventListener(t,l,a));else{if(i=="http://www.w3.org/2000/svg")t=t.replace(/xlink(H|:h)/,"h").replace(/sName$/,"s");else if(t!="width"&&t!="height"&&t!="href"&&t!="list"&&t!="form"&&t!="tabIndex"&&t!="download"&&t!="rowSpan"&&t!="colSpan"&&t!="role"&&t!="popover"&&t in e)try{return void(e[t]=n??"")}catch{}if(typeof n=="function")return;n==null||n===!1&&t[4]!="-"?e.removeAttribute(t):e.setAttribute(t,t=="popover"&&n==1?"":n)}}function pn(e){return function(t){var n=this.__e;if(n){if(n=n[e],t[_e]==null)t[_e]=Re++;else if(t[_e]<this.__a[e])return;return n(k.event?k.event(t):t)}}}function $e(e,t,n,s,i,a,l,c,m,p){var d,u,f,r,g,b,_,v,h,x,D,L,W,K,N,te,G,B,V=t.type;if(t.constructor!==de)return null;128&n.__u&&(m=32&n.__u,d=n.__c.__z)&&(t.__u|=m,u=a=[],d.nodeType==8?c=be(d,a):a.push(d),c=a[0]||c),(d=k.__b)&&d(t);e:if(typeof V=="function"){f=l.length;try{if(v=t.props,h=(d=V.prototype)&&d.render,x=(d=V.contextType)&&s[d.__c],D=d?x?x.props.value:d.__:s,(r=n.__c)?(t.__c=r,2&r.__g&&(r.__g|=1)):(h?t.__c=r=new V(v,D):(t.__c=r=new ye(v,D),r.constructor=V,r.render=mn),x&&x.sub(r),r.state||(r.state={}),r.__n=s,r.__g|=8,r.__h=[],r.__k=[]),h&&(r.__s||(r.__s=r.state),V.getDerivedStateFromProps&&(r.__s==r.state&&(r.__s=oe({},r.__s)),oe(r.__s,V.getDerivedStateFromProps(v,r.__s)))),g=r.props,b=r.state,r.__v=t,n.__c){if(v!==g&&h&&!V.getDerivedStateFromProps&&r.componentWillReceiveProps&&r.componentWillReceiveProps(v,D),t.__v==n.__v&&!(8&r.__g)||!(4&r.__g)&&r.shouldComponentUpdate&&r.shouldComponentUpdate(v,r.__s,D)===!1){t.__v!=n.__v&&(r.props=v,r.state=r.__s,r.__g&=-9),t.__e=n.__e,t.__k=n.__k,t.__k.some(function(q){q&&(q.__=t)}),Ce.push.apply(r.__h,r.__k),r.__k=[],r.__h.length&&l.push(r),c=X(n);break e}r.componentWillUpdate&&r.componentWillUpdate(v,r.__s,D),h&&r.componentDidUpdate&&r.__h.push(function(){r.componentDidUpdate(g,b,_)})}else h&&!V.getDerivedStateFromProps&&r.componentWillMount&&r.componentWillMount(),h&&r.componentDidMount&&r.__h.push(r.componentDidMount);r.context=D,r.props=v,r.__P=e,r.__g&=-5,L=k.__r,W=h?25:0;do r.__g&=-9,L&&L(t),d=r.render(r.props,r.state=r.__s,r.context);while(8&r.__g&&++W<25);h&&(Ce.push.apply(r.__h,r.__k),r.__k=[]),r.state=r.__s,r.getChildContext&&(s=oe({},s,r.getChildContext())),h&&n.__c&&r.getSnapshotBeforeUpdate&&(_=r.getSnapshotBeforeUpdate(g,b)),K=d&&d.type===J&&d.key==null?d.props.children:d,v.__P&&(d=c,i=(e=v.__P).namespaceURI,m=a=null,n.props&&n.props.__P!=e&&(n.__k.some(function(q){q&&Ae(q,q)}),n.__k=null),c=n.__k?X(n,0):null),c=nt(e,Ee(K)?K:[K],t,n,s,i,a,l,c,m,p),v.__P&&(t.__e=null,c=d),t.__u&=-161,u&&u.some(ne),r.__h.length&&l.push(r),1&r.__g&&(r.__g&=-4)}catch(q){if(l.length=f,t.__v=null,m||a)if(q&&q.then){if(t.__u|=128|m,a){for(~(G=a.indexOf(c||void 0))||(G=a.length);(B=a[G-1])&&B.nodeType==8;)G--;for(;G<a.length;G++)if(B=a[G])if(a[G]=null,N){if(B==te)break}else{if(B.nodeType!=8)break;B.data.startsWith("$s")&&(te=be(N=B))}}if(!N){for(;c&&c.nodeType==8&&c.nextSibling;)c=c.nextSibling;N=c}(d=be(N=t.__c.__z||(t.__c.__z=N)))?(t.__e=N,c=d):t.__e=c,c=c&&c.nextSibling}else a&&a.some(ne);else t.__e=n.__e;t.__k||(t.__k=n.__k||[]),q&&q.then||rt(t),k.__e(q,t,n)}}else c=t.__e=fn(n.__e,t,n,s,i,a,l,m,p,e);return(d=k.diffed)&&d(t),c}function be(e,t){if(e&&e.nodeType==8&&e.data.startsWith("$s"))for(var n=1;e=e.nextSibling;){if(e.nodeType==8){if(e.data.startsWith("$s"))n++;else if(e.data.startsWith("/$s")&&!--n)return e}t&&t.push(e)}}function rt(e){e&&(e.__c&&(e.__c.__g|=4),e.__k&&e.__k.some(rt))}function st(e,t,n){for(var s=0;s<n.length;)Oe(n[s++],n[s++],n[s++]);k.__c&&k.__c(t,e),e.some(function(i){try{e=i.__h,i.__h=[],e.some(function(a){a.call(i)})}catch(a){k.__e(a,i.__v)}})}function fn(e,t,n,s,i,a,l,c,m,p){var d,u,f,r,g,b,_,v,h=n.props||xe,x=t.props,D=t.type;if(D=="svg"?i="http://www.w3.org/2000/svg":D=="math"?i="http://www.w3.org/1998/Math/MathML":i||(i="http://www.w3.org/1999/xhtml"),a){for(d=0;d<a.length;d++)if((g=a[d])&&(D?g.localName==D:g.nodeType==3)){e=g,a[d]=null;break}}if(!e){if(v=p.ownerDocument||document,!D)return v.createTextNode(x);e=v.createElementNS(i,D,x.is?x:p),c&&(k.__m&&k.__m(t,a),c=!1),a=null}if(D){if(p=D=="template"&&e.content||e,a=D=="textarea"&&x.defaultValue!=null?null:a&&Ze.call(p.childNodes),!c&&a)for(h={},d=0;d<e.attributes.length;d++)h[(g=e.attributes[d]).name]=g.value;for(d in h)g=h[d],d=="dangerouslySetInnerHTML"?f=g:d=="children"||d in x||d=="value"&&"defaultValue"in x||d=="checked"&&"defaultChecked"in x||ge(e,d,null,g,i);for(d in x)g=x[d],d=="children"?r=g:d=="dangerouslySetInnerHTML"?u=g:d=="value"?b=g:d=="checked"?_=g:c&&typeof g!="function"||h[d]===g||ge(e,d,g,h[d],i);u?(c||f&&(u.__html==f.__html||u.__html==e.innerHTML)||(e.innerHTML=u.__html),t.__k=[]):(f&&(e.textContent=""),(D=="foreignObject"||i=="http://www.w3.org/1998/Math/MathML"&&ln.test(D))&&(i="http://www.w3.org/1999/xhtml"),nt(p,Ee(r)?r:[r],t,n,s,i,a,l,a?a[0]:n.__k&&X(n,0),c,m),a&&a.some(ne)),c&&D!="textarea"||(d="value",D=="progress"&&b==null?e.removeAttribute(d):b==null||b===e[d]&&(D!="progress"||b)||ge(e,d,b,h[d],i),d="checked",_!=null&&_!=e[d]&&ge(e,d,_,h[d],i))}else h===x||c&&e.data==x||(e.data=x);return e}function Oe(e,t,n,s){try{typeof e=="function"?t?t.__x=e(t)||1:s&&(s=s.__c||s.__e)&&(t=s.__x)&&(s.__x=null,typeof t=="function"?t():e(null)):e.current=t}catch(i){k.__e(i,n)}}function Ae(e,t,n){var s,i,a,l;if(k.unmount&&k.unmount(e),!(s=e.ref)||s.current&&s.current!=e.__e||Oe(s,null,t,e),s=e.__c){if(s.componentWillUnmount)try{s.componentWillUnmount()}catch(c){k.__e(c,t)}s.__P=s.__n=null}if(s=e.__k)for(l=0;l<s.length;l++)s[l]&&Ae(s[l],t,typeof e.type!="function"||n&&!e.props.__P);!n&&(s=e.__c)&&(s=s.__z)&&(i=be(s,a=[]))&&(s==e.__e&&a.some(ne),ne(i),ne(s)),n||ne(e.__e),e.__e=e.__c=e.__=null}function mn(e,t,n){return this.constructor(e,n)}function it(e,t){var n,s,i,a;k.__&&k.__(e,t),t.nodeType==9&&(t=t.documentElement),s=(n=e&&32&e.__u)?null:t.__k,t.__k=he(J,{children:[e]}),i=[],a=[],$e(t,t.__k,s||xe,xe,t.namespaceURI,s?null:t.firstChild?Ze.call(t.childNodes):null,i,s?s.__e:t.firstChild,n,a),st(i,t.__k,a),t.__k.props.children=null}k={__e:function(e,t,n,s){for(var i,a,l;t=t.__;)if((i=t.__c)&&!(1&i.__g)){i.__g|=4;try{if((l=(a=i.constructor)&&a.getDerivedStateFromError)&&i.setState(a.getDerivedStateFromError(e)),i.componentDidCatch&&(i.componentDidCatch(e,s||{}),l=1),l&&8&i.__g)return void(i.__g|=2)}catch(c){e=c}}throw ve=0,e}},Ke=0,sn=function(e){return e!=null&&e.constructor===de},ye.prototype.setState=function(e,t){var n=this.__s;n&&n!=this.state||(n=this.__s=oe({},this.state)),typeof e=="function"&&(e=e(oe({},n),this.props)),e&&(oe(n,e),this.__v&&(t&&this.__k.push(t),Qe(this)))},ye.prototype.forceUpdate=function(e){this.__v&&(this.__g|=4,e&&this.__h.push(e),Qe(this))},ye.prototype.render=J,Y=[],ve=0,Ye=function(e,t){return e.__v.__b-t.__v.__b},_e=Symbol(),Xe=/(PointerCapture)$|Capture$/i,Re=0,Te={},an=0;var ue,O,Ie,at,Ue=Object.is,we=0,_t=[],je=[],$=k,lt=$.__b,dt=$.__r,ct=$.diffed,ut=$.__c,pt=$.unmount,ft=$.__;function Me(e,t){$.__h&&$.__h(O,e,we||t),we=0;var n=O.__H||(O.__H={__:[],__h:[]});return e>=n.__.length&&n.__.push({}),n.__[e]}function T(e){return we=1,gn(yt,e)}function gn(e,t,n){var s=Me(ue++,2);if(s.t=e,!s.__c&&(s.__=[n?n(t):yt(void 0,t),function(a){var l=(s.__N||s.__)[0],c=s.t(l,a);Ue(l,c)||(s.__N=[c,s.__[1]],s.__c.setState({}))}],s.__c=O,!O.__f)){O.__f=!0;var i=O.shouldComponentUpdate;O.shouldComponentUpdate=function(a,l,c){var m=this.__H;if(!m)return!0;var p=!1,d=this.props!=a;if(m.__.some(function(f){f.__N&&(p=!0,Ue(f.__[0],f.__N[0])||(d=!0))}),i){var u=i.call(this,a,l,c);return p?u||d:u}return!p||d}}return s.__}function z(e,t){var n=Me(ue++,3);!$.__s&&ht(n.__H,t)&&(n.__P=!0,n.__=e,n.u=t,O.__H.__h.push(n))}function pe(e){return we=5,Pe(function(){return{current:e}},[])}function Pe(e,t){var n=Me(ue++,7);return ht(n.__H,t)&&(n.__=e(),n.__H=t),n.__}function _n(){var e;do{for(;e=je.shift();)try{ce(e)}catch(n){$.__e(n,{__:(e=e.__P)&&e.__v})}for(;e=_t.shift();){var t=e.__H;if(e.__P&&t)try{t.__h.some(ce),t.__h.some(qe),t.__h=[]}catch(n){t.__h=[],$.__e(n,e.__v)}}}while(je.length)}$.__b=function(e){O=null,lt&&lt(e)},$.__=function(e,t){e&&t.__k&&t.__k.__m&&(e.__m=t.__k.__m),ft&&ft(e,t)},$.__r=function(e){dt&&dt(e),ue=0;var t=(O=e.__c).__H;t&&(Ie==O?O.__h=[]:(t.__h.some(ce),t.__h.some(qe),ue=0),t.__h=[],t.__.some(function(n){n.__N&&(n.__=n.__N),n.u=n.__N=void 0})),Ie=O},$.diffed=function(e){ct&&ct(e);var t=e.__c;t&&t.__H&&(t.__H.__h.length&&gt(_t.push(t)),t.__H.__.some(function(n){n.u&&(n.__H=n.u)})),Ie=O=null},$.__c=function(e,t){t.some(function(n){try{n.__h.some(ce),n.__h=n.__h.filter(function(s){return!s.__||qe(s)})}catch(s){n.__h=[function(){throw s}]}}),ut&&ut(e,t)},$.unmount=function(e){pt&&pt(e);var t,n,s=e.__c;s&&s.__H&&(s.__H.__.some(function(i){try{if(i.__P&&i.__c){if(n===void 0){for(n=e.__;n&&(!n.__c||!n.__c.__P);)n=n.__;n=n&&n.__c}i.__P=n,gt(je.push(i))}else ce(i)}catch(a){t=a}}),s.__H=void 0,t&&$.__e(t,s.__v))};var mt=typeof requestAnimationFrame=="function";function hn(e){var t,n=function(){clearTimeout(s),mt&&cancelAnimationFrame(t),setTimeout(e)},s=setTimeout(n,35);mt&&(t=requestAnimationFrame(n))}function gt(e){e!=1&&at==$.requestAnimationFrame||((at=$.requestAnimationFrame)||hn)(_n)}function ce(e){var t=O,n=e.__c;typeof n=="function"&&(e.__c=void 0,n()),O=t}function qe(e){var t=O;e.__c=e.__(),O=t}function ht(e,t){return!e||e.length!=t.length||t.some(function(n,s){return!Ue(n,e[s])})}function yt(e,t){return typeof t=="function"?t(e):t}function M(e){return e===null?"null":Array.isArray(e)?"array":typeof e}function Z(e){return M(e)==="object"}function yn(e){return Array.isArray(e)&&e.length>0&&e.every(t=>"message"in t)}function Ne(e,t){return e.length<124?e:t}var bt="graphql-transport-ws";var H=(e=>(e[e.InternalServerError=4500]="InternalServerError",e[e.InternalClientError=4005]="InternalClientError",e[e.BadRequest=4400]="BadRequest",e[e.BadResponse=4004]="BadResponse",e[e.Unauthorized=4401]="Unauthorized",e[e.Forbidden=4403]="Forbidden",e[e.SubprotocolNotAcceptable=4406]="SubprotocolNotAcceptable",e[e.ConnectionInitialisationTimeout=4408]="ConnectionInitialisationTimeout",e[e.ConnectionAcknowledgementTimeout=4504]="ConnectionAcknowledgementTimeout",e[e.SubscriberAlreadyExists=4409]="SubscriberAlreadyExists",e[e.TooManyInitialisationRequests=4429]="TooManyInitialisationRequests",e))(H||{}),F=(e=>(e.ConnectionInit="connection_init",e.ConnectionAck="connection_ack",e.Ping="ping",e.Pong="pong",e.Subscribe="subscribe",e.Next="next",e.Error="error",e.Complete="complete",e))(F||{});function vt(e){if(!Z(e))throw new Error(`Message is expected to be an object, but got ${M(e)}`);if(!e.type)throw new Error("Message is missing the 'type' property");if(typeof e.type!="string")throw new Error(`Message is expects the 'type' property to be a string, but got ${M(e.type)}`);switch(e.type){case"connection_init":case"connection_ack":case"ping":case"pong":{if(e.payload!=null&&!Z(e.payload))throw new Error(`"${e.type}" message expects the 'payload' property to be an object or nullish or missing, but got "${e.payload}"`);break}case"subscribe":{if(typeof e.id!="string")throw new Error(`"${e.type}" message expects the 'id' property to be a string, but got ${M(e.id)}`);if(!e.id)throw new Error(`"${e.type}" message requires a non-empty 'id' property`);if(!Z(e.payload))throw new Error(`"${e.type}" message expects the 'payload' property to be an object, but got ${M(e.payload)}`);if(typeof e.payload.query!="string")throw new Error(`"${e.type}" message payload expects the 'query' property to be a string, but got ${M(e.payload.query)}`);if(e.payload.variables!=null&&!Z(e.payload.variables))throw new Error(`"${e.type}" message payload expects the 'variables' property to be a an object or nullish or missing, but got ${M(e.payload.variables)}`);if(e.payload.operationName!=null&&M(e.payload.operationName)!=="string")throw new Error(`"${e.type}" message payload expects the 'operationName' property to be a string or nullish or missing, but got ${M(e.payload.operationName)}`);if(e.payload.extensions!=null&&!Z(e.payload.extensions))throw new Error(`"${e.type}" message payload expects the 'extensions' property to be a an object or nullish or missing, but got ${M(e.payload.extensions)}`);break}case"next":{if(typeof e.id!="string")throw new Error(`"${e.type}" message expects the 'id' property to be a string, but got ${M(e.id)}`);if(!e.id)throw new Error(`"${e.type}" message requires a non-empty 'id' property`);if(!Z(e.payload))throw new Error(`"${e.type}" message expects the 'payload' property to be an object, but got ${M(e.payload)}`);break}case"error":{if(typeof e.id!="string")throw new Error(`"${e.type}" message expects the 'id' property to be a string, but got ${M(e.id)}`);if(!e.id)throw new Error(`"${e.type}" message requires a non-empty 'id' property`);if(!yn(e.payload))throw new Error(`"${e.type}" message expects the 'payload' property to be an array of GraphQL errors, but got ${JSON.stringify(e.payload)}`);break}case"complete":{if(typeof e.id!="string")throw new Error(`"${e.type}" message expects the 'id' property to be a string, but got ${M(e.id)}`);if(!e.id)throw new Error(`"${e.type}" message requires a non-empty 'id' property`);break}default:throw new Error(`Invalid message 'type' property "${e.type}"`)}return e}function xt(e,t){return vt(typeof e=="string"?JSON.parse(e,t):e)}function ae(e,t){return vt(e),JSON.stringify(e,t)}function Fe(e){let{url:t,connectionParams:n,lazy:s=!0,onNonLazyError:i=console.error,lazyCloseTimeout:a=0,keepAlive:l=0,disablePong:c,connectionAckWaitTimeout:m=0,retryAttempts:p=5,retryWait:d=async function(S){let y=Math.pow(2,S);await new Promise(P=>setTimeout(P,y*1e3+Math.floor(Math.random()*2700+300)))},shouldRetry:u=He,on:f,webSocketImpl:r,generateID:g=function(){return"xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".replace(/[xy]/g,S=>{let y=Math.random()*16|0;return(S=="x"?y:y&3|8).toString(16)})},jsonMessageReplacer:b,jsonMessageReviver:_}=e,v;if(r){if(!vn(r))throw new Error("Invalid WebSocket implementation provided");v=r}else typeof WebSocket<"u"?v=WebSocket:typeof global<"u"?v=global.WebSocket||global.MozWebSocket:typeof window<"u"&&(v=window.WebSocket||window.MozWebSocket);if(!v)throw new Error("WebSocket implementation missing; on Node you can `import WebSocket from 'ws';` and pass `webSocketImpl: WebSocket` to `createClient`");let h=v,x=(()=>{let C=(()=>{let y={};return{on(P,R){return y[P]=R,()=>{delete y[P]}},emit(P){"id"in P&&y[P.id]?.(P)}}})(),S={connecting:f?.connecting?[f.connecting]:[],opened:f?.opened?[f.opened]:[],connected:f?.connected?[f.connected]:[],ping:f?.ping?[f.ping]:[],pong:f?.pong?[f.pong]:[],message:f?.message?[C.emit,f.message]:[C.emit],closed:f?.closed?[f.closed]:[],error:f?.error?[f.error]:[]};return{onMessage:C.on,on(y,P){let R=S[y];return R.push(P),()=>{let E=R.indexOf(P);E>-1&&R.splice(E,1)}},emit(y,...P){for(let R of[...S[y]])R(...P)}}})();function D(C){let S=[x.on("error",y=>{S.forEach(P=>P()),C(y)}),x.on("closed",y=>{S.forEach(P=>P()),C(y)})];return()=>S.forEach(y=>y())}let L,W=0,K,N=!1,te=0,G=!1;async function B(){clearTimeout(K);let[C,S]=await(L??(L=new Promise((R,E)=>(async()=>{if(N){if(await d(te),!W)return L=void 0,E({code:1e3,reason:"All Subscriptions Gone"});te++}x.emit("connecting",N);let w=new h(typeof t=="function"?await t():t,bt),Q,se;function me(){isFinite(l)&&l>0&&(clearTimeout(se),se=setTimeout(()=>{w.readyState===h.OPEN&&(w.send(ae({type:F.Ping})),x.emit("ping",!1,void 0))},l))}D(U=>{L=void 0,clearTimeout(Q),clearTimeout(se),E(U),U instanceof fe&&(w.close(4499,"Terminated"),w.onerror=null,w.onclose=null)}),w.onerror=U=>x.emit("error",U),w.onclose=U=>x.emit("closed",U),w.onopen=async()=>{try{x.emit("opened",w);let U=typeof n=="function"?await n():n;if(w.readyState!==h.OPEN)return;w.send(ae(U?{type:F.ConnectionInit,payload:U}:{type:F.ConnectionInit},b)),isFinite(m)&&m>0&&(Q=setTimeout(()=>{w.close(H.ConnectionAcknowledgementTimeout,"Connection acknowledgement timeout")},m)),me()}catch(U){x.emit("error",U),w.close(H.InternalClientError,Ne(U instanceof Error?U.message:String(U),"Internal client error"))}};let ie=!1;w.onmessage=({data:U})=>{try{let A=xt(U,_);if(x.emit("message",A),A.type==="ping"||A.type==="pong"){x.emit(A.type,!0,A.payload),A.type==="pong"?me():c||(w.send(ae(A.payload?{type:F.Pong,payload:A.payload}:{type:F.Pong},b)),x.emit("pong",!1,A.payload));return}if(ie)return;if(A.type!==F.ConnectionAck)throw new Error(`First message cannot be of type ${A.type}`);clearTimeout(Q),ie=!0,x.emit("connected",w,A.payload,N),N=!1,te=0;let ze=new Promise((Nn,rn)=>D(rn));ze.catch(()=>{}),R([w,ze])}catch(A){w.onmessage=null,x.emit("error",A),w.close(H.BadResponse,Ne(A instanceof Error?A.message:String(A),"Bad response"))}}})())));C.readyState===h.CLOSING&&await S;let y=()=>{},P=new Promise(R=>y=R);return[C,y,new Promise((R,E)=>{let w=D(E);C.readyState!==h.OPEN&&S.catch(E),P.then(()=>{if(w(),!W){let Q=()=>C.close(1e3,"Normal Closure");isFinite(a)&&a>0?(clearTimeout(K),K=setTimeout(()=>{!W&&C.readyState===h.OPEN&&Q()},a)):Q()}R()})})]}function V(C){if(He(C)&&(bn(C.code)||[H.InternalServerError,H.InternalClientError,H.BadRequest,H.BadResponse,H.Unauthorized,H.SubprotocolNotAcceptable,H.SubscriberAlreadyExists,H.TooManyInitialisationRequests].includes(C.code)))throw C;if(G)return!1;if(He(C)&&C.code===1e3)return W>0;if(!p||te>=p||!u(C))throw C;return N=!0}s||(async()=>{for(W++;;)try{let[,,C]=await B();await C}catch(C){try{if(!V(C))return}catch(S){return i?.(S)}}})();function q(C,S){let y=g(C),P=!1,R=!1,E=()=>{W--,P=!0};return(async()=>{for(W++;;)try{let[w,Q,se]=await B();if(P)return se.catch(()=>{}),Q();let me=x.onMessage(y,ie=>{switch(ie.type){case F.Next:{S.next(ie.payload);return}case F.Error:{R=!0,P=!0,S.error(ie.payload),E();return}case F.Complete:{P=!0,E();return}}});w.send(ae({id:y,type:F.Subscribe,payload:C},b)),E=()=>{!P&&w.readyState===h.OPEN&&w.send(ae({id:y,type:F.Complete},b)),W--,P=!0,Q()},await se.finally(me);return}catch(w){if(!V(w))return}})().then(()=>{R||S.complete()}).catch(w=>{S.error(w)}),()=>{P||E()}}return{on:x.on,subscribe:q,iterate(C){let S=[],y={done:!1,error:null,resolve:()=>{}},P=q(C,{next(E){S.push(E),y.resolve()},error(E){y.done=!0,y.error=E,y.resolve()},complete(){y.done=!0,y.resolve()}}),R=(async function*(){for(;;){for(S.length||await new Promise(w=>y.resolve=w);S.length;)yield S.shift();if(y.error)throw y.error;if(y.done)return}})();return R.throw=async E=>(y.done||(y.done=!0,y.error=E,y.resolve()),{done:!0,value:void 0}),R.return=async()=>(P(),{done:!0,value:void 0}),R},async dispose(){if(G=!0,L){let[C]=await L;C.close(1e3,"Normal Closure")}},terminate(){L&&x.emit("closed",new fe)}}}var fe=class extends Error{name="TerminatedCloseEvent";message="4499: Terminated";code=4499;reason="Terminated";wasClean=!1};function He(e){return Z(e)&&"code"in e&&"reason"in e}function bn(e){return[1e3,1001,1006,1005,1012,1013,1014].includes(e)?!1:e>=1e3&&e<=1999}function vn(e){return typeof e=="function"&&"constructor"in e&&"CLOSED"in e&&"CLOSING"in e&&"CONNECTING"in e&&"OPEN"in e}var re=class extends Error{constructor(n,s){super(n);this.code=s}code;get refusesToken(){return this.code==="UNAUTHENTICATED"||this.code==="FORBIDDEN"}};function Ve(e){let[t]=e;return new re(t?.message??"unknown error",t?.extensions?.code)}var Ct=window.location.origin;async function ee(e,t,n){let s=await fetch(`${Ct}/graphql`,{method:"POST",headers:{"content-type":"application/json",accept:"application/graphql-response+json, application/json",authorization:`Bearer ${e}`},body:JSON.stringify({query:t.toString(),variables:n})}),i=await s.json();if(i.errors?.length)throw Ve(i.errors);if(!i.data)throw new re(`HTTP ${s.status} without data`,void 0);return i.data}var xn=e=>Math.min(2e3,100*2**e),ke=class{constructor(t,n,s){this.onRefused=s;let i=new URL("/graphql",Ct);i.protocol=i.protocol==="https:"?"wss:":"ws:",this.client=Fe({url:i.toString(),connectionParams:{authorization:`Bearer ${t}`},lazy:!0,retryAttempts:0,keepAlive:1e4,on:{connected:()=>n("live"),closed:a=>{n("reconnecting");let l=a;l?.code===4403&&this.onRefused(new re(l.reason||"the server refused the token","FORBIDDEN"))}}})}onRefused;client;follow(t,n,s){let i=!1,a=0,l,c=()=>{},m=()=>{i||(l=setTimeout(p,xn(a)),a+=1)},p=()=>{i||(c=this.client.subscribe({query:t.toString(),variables:n()},{next:d=>{if(d.errors?.length){let u=Ve(d.errors);u.refusesToken&&(i=!0,this.onRefused(u));return}d.data&&(a=0,s(d.data))},error:d=>{if(Array.isArray(d)){let u=Ve(d);if(u.refusesToken){i=!0,this.onRefused(u);return}}m()},complete:m}))};return p(),()=>{i=!0,clearTimeout(l),c()}}once(t,n,s){return this.client.subscribe({query:t.toString(),variables:n},{next:i=>{i.data&&s(i.data)},error:()=>{},complete:()=>{}})}close(){this.client.dispose()}};function le(e,t){return t===void 0||BigInt(e)>BigInt(t)}var Cn=Symbol.for("pv"),wn=0;function o(e,t,n,s,i,a){t||(t={});var l,c,m=t;if("ref"in m&&typeof e!="function")for(c in m={},t)c=="ref"?l=t[c]:m[c]=t[c];var p={type:e,props:m,key:n,ref:l,__k:null,__:null,__b:0,__e:null,__c:null,constructor:Cn,__v:--wn,__i:-1,__u:0};return(i||a)&&(p.__source=i,p.__self=a),k.vnode&&k.vnode(p),p}function Pn(e){let t=Math.min(...e),s=Math.max(...e)-t||1;return i=>44-(i-t)/s*40}function Le({values:e,label:t}){if(e.length<2)return o("svg",{class:"spark",viewBox:"0 0 240 48",role:"img","aria-label":`${t}: not enough points yet`});let n=Pn(e),s=240/(e.length-1),i=e.map((a,l)=>`${(l*s).toFixed(1)},${n(a).toFixed(1)}`).join(" ");return o("svg",{class:"spark",viewBox:"0 0 240 48",role:"img","aria-label":t,"data-points":e.length,children:o("polyline",{points:i,fill:"none",stroke:"currentColor","stroke-width":"2"})})}function wt({items:e}){let t=Math.max(1,...e.map(n=>n.value));return o("div",{class:"bars",children:e.map(n=>o("div",{class:"bar","data-status":n.label,"data-count":n.value,children:[o("span",{class:"bar-label",children:n.label}),o("span",{class:"bar-track",children:o("span",{class:`bar-fill status-${n.label}`,style:{width:`${n.value/t*100}%`}})}),o("span",{class:"bar-value",children:n.value})]},n.label))})}function We({points:e,label:t,step:n=!1}){if(e.length===0)return o("p",{class:"muted",children:"No events yet."});let a=e.map(g=>g.t),l=e.map(g=>g.v),[c,m]=[Math.min(...a),Math.max(...a)],[p,d]=[Math.min(0,...l),Math.max(...l)],u=g=>30+(g-c)/(m-c||1)*440,f=g=>104-(g-p)/(d-p||1)*92,r=[];return e.forEach((g,b)=>{let _=e[b-1];b===0?r.push(`M${u(g.t).toFixed(1)},${f(g.v).toFixed(1)}`):(n&&_&&r.push(`L${u(g.t).toFixed(1)},${f(_.v).toFixed(1)}`),r.push(`L${u(g.t).toFixed(1)},${f(g.v).toFixed(1)}`))}),o("svg",{class:"timechart",viewBox:"0 0 480 120",role:"img","aria-label":t,"data-points":e.length,children:[o("text",{x:"2",y:"12",class:"axis",children:d}),o("text",{x:"2",y:104,class:"axis",children:p}),o("path",{d:r.join(" "),fill:"none",stroke:"currentColor","stroke-width":"2"}),e.map(g=>o("circle",{cx:u(g.t),cy:f(g.v),r:"2.5",fill:"currentColor"}))]})}var I=class extends String{__apiType;value;__meta__;constructor(t,n){super(t),this.value=t,this.__meta__=n}toString(){return this.value}},Pt=new I(`
    fragment ConsoleOrder on Order {
  id
  userId
  status
  total
  reservation
  payment
  reason
  placedAt
  updatedAt
  position
  lines {
    productId
    sku
    name
    quantity
    unitPrice
    lineTotal
  }
}
    `,{fragmentName:"ConsoleOrder"}),kt=new I(`
    fragment ConsoleRebuildProgress on RebuildProgress {
  name
  phase
  eventsDone
  eventsTotal
  eventsPerSecond
  position
  elapsedMillis
  rows
  error
}
    `,{fragmentName:"ConsoleRebuildProgress"}),Dt=new I(`
    query ConsoleWhoAmI {
  dashboard {
    position
  }
}
    `),St=new I(`
    subscription ConsoleDashboard($after: Position) {
  dashboardUpdated(after: $after) {
    ordersByStatus {
      status
      count
    }
    revenue
    ordersToday
    lowStock(threshold: 5) {
      id
      sku
      name
      stock
    }
    position
  }
}
    `),Tt=new I(`
    query ConsoleRecentOrders($first: Int!) {
  orders(first: $first) {
    edges {
      node {
        ...ConsoleOrder
      }
    }
  }
}
    fragment ConsoleOrder on Order {
  id
  userId
  status
  total
  reservation
  payment
  reason
  placedAt
  updatedAt
  position
  lines {
    productId
    sku
    name
    quantity
    unitPrice
    lineTotal
  }
}`),Rt=new I(`
    subscription ConsoleOrders($after: Position) {
  orderUpdated(after: $after) {
    ...ConsoleOrder
  }
}
    fragment ConsoleOrder on Order {
  id
  userId
  status
  total
  reservation
  payment
  reason
  placedAt
  updatedAt
  position
  lines {
    productId
    sku
    name
    quantity
    unitPrice
    lineTotal
  }
}`),Et=new I(`
    query ConsoleOrderHistory($id: UUID!) {
  history(streamId: $id, first: 100) {
    edges {
      node {
        position
        version
        type
        data
        metadata
        recordedAt
      }
    }
  }
}
    `),$t=new I(`
    subscription ConsoleProjections {
  projectionsUpdated {
    name
    position
    head
    lag
    lagMillis
    status
    error
    failedPosition
    updatedAt
  }
}
    `),Ot=new I(`
    mutation ConsoleVerify($name: String!) {
  verifyProjection(name: $name) {
    name
    ok
    position
    rows
    differences
    elapsedMillis
  }
}
    `),At=new I(`
    mutation ConsoleRebuild($name: String!) {
  rebuildProjection(name: $name) {
    ...ConsoleRebuildProgress
  }
}
    fragment ConsoleRebuildProgress on RebuildProgress {
  name
  phase
  eventsDone
  eventsTotal
  eventsPerSecond
  position
  elapsedMillis
  rows
  error
}`),It=new I(`
    subscription ConsoleRebuildProgress($name: String!) {
  rebuildProgress(name: $name) {
    ...ConsoleRebuildProgress
  }
}
    fragment ConsoleRebuildProgress on RebuildProgress {
  name
  phase
  eventsDone
  eventsTotal
  eventsPerSecond
  position
  elapsedMillis
  rows
  error
}`),Ut=new I(`
    query ConsoleProducts {
  products(first: 100, includeDiscontinued: true) {
    edges {
      node {
        id
        sku
        name
      }
    }
  }
}
    `),jt=new I(`
    query ConsoleProductTimeline($id: UUID!) {
  productTimeline(id: $id, last: 50) {
    version
    eventType
    recordedAt
    position
    price
    stock
  }
}
    `),qt=new I(`
    subscription ConsoleProduct($id: UUID!, $after: Position) {
  productUpdated(ids: [$id], after: $after) {
    id
    sku
    name
    price
    stock
    version
    position
  }
}
    `),Mt=new I(`
    subscription ConsoleCluster {
  clusterUpdated {
    node
    nodes {
      id
      roles
      since
      alive
      unitsHeld
      serving {
        position
        lag
        reportedAt
      }
    }
    units {
      name
      holder
      since
    }
  }
}
    `);var Dn={"\n  query ConsoleWhoAmI {\n    dashboard {\n      position\n    }\n  }\n":Dt,"\n  subscription ConsoleDashboard($after: Position) {\n    dashboardUpdated(after: $after) {\n      ordersByStatus {\n        status\n        count\n      }\n      revenue\n      ordersToday\n      lowStock(threshold: 5) {\n        id\n        sku\n        name\n        stock\n      }\n      position\n    }\n  }\n":St,"\n  query ConsoleRecentOrders($first: Int!) {\n    orders(first: $first) {\n      edges {\n        node {\n          ...ConsoleOrder\n        }\n      }\n    }\n  }\n":Tt,"\n  fragment ConsoleOrder on Order {\n    id\n    userId\n    status\n    total\n    reservation\n    payment\n    reason\n    placedAt\n    updatedAt\n    position\n    lines {\n      productId\n      sku\n      name\n      quantity\n      unitPrice\n      lineTotal\n    }\n  }\n":Pt,"\n  subscription ConsoleOrders($after: Position) {\n    orderUpdated(after: $after) {\n      ...ConsoleOrder\n    }\n  }\n":Rt,"\n  query ConsoleOrderHistory($id: UUID!) {\n    history(streamId: $id, first: 100) {\n      edges {\n        node {\n          position\n          version\n          type\n          data\n          metadata\n          recordedAt\n        }\n      }\n    }\n  }\n":Et,"\n  subscription ConsoleProjections {\n    projectionsUpdated {\n      name\n      position\n      head\n      lag\n      lagMillis\n      status\n      error\n      failedPosition\n      updatedAt\n    }\n  }\n":$t,"\n  mutation ConsoleVerify($name: String!) {\n    verifyProjection(name: $name) {\n      name\n      ok\n      position\n      rows\n      differences\n      elapsedMillis\n    }\n  }\n":Ot,"\n  mutation ConsoleRebuild($name: String!) {\n    rebuildProjection(name: $name) {\n      ...ConsoleRebuildProgress\n    }\n  }\n":At,"\n  fragment ConsoleRebuildProgress on RebuildProgress {\n    name\n    phase\n    eventsDone\n    eventsTotal\n    eventsPerSecond\n    position\n    elapsedMillis\n    rows\n    error\n  }\n":kt,"\n  subscription ConsoleRebuildProgress($name: String!) {\n    rebuildProgress(name: $name) {\n      ...ConsoleRebuildProgress\n    }\n  }\n":It,"\n  query ConsoleProducts {\n    products(first: 100, includeDiscontinued: true) {\n      edges {\n        node {\n          id\n          sku\n          name\n        }\n      }\n    }\n  }\n":Ut,"\n  query ConsoleProductTimeline($id: UUID!) {\n    productTimeline(id: $id, last: 50) {\n      version\n      eventType\n      recordedAt\n      position\n      price\n      stock\n    }\n  }\n":jt,"\n  subscription ConsoleProduct($id: UUID!, $after: Position) {\n    productUpdated(ids: [$id], after: $after) {\n      id\n      sku\n      name\n      price\n      stock\n      version\n      position\n    }\n  }\n":qt,"\n  subscription ConsoleCluster {\n    clusterUpdated {\n      node\n      nodes {\n        id\n        roles\n        since\n        alive\n        unitsHeld\n        serving {\n          position\n          lag\n          reportedAt\n        }\n      }\n      units {\n        name\n        holder\n        since\n      }\n    }\n  }\n":Mt};function j(e){return Dn[e]??{}}var Nt=j(`
  query ConsoleWhoAmI {
    dashboard {
      position
    }
  }
`),Ht=j(`
  subscription ConsoleDashboard($after: Position) {
    dashboardUpdated(after: $after) {
      ordersByStatus {
        status
        count
      }
      revenue
      ordersToday
      lowStock(threshold: 5) {
        id
        sku
        name
        stock
      }
      position
    }
  }
`),Ft=j(`
  query ConsoleRecentOrders($first: Int!) {
    orders(first: $first) {
      edges {
        node {
          ...ConsoleOrder
        }
      }
    }
  }
`),so=j(`
  fragment ConsoleOrder on Order {
    id
    userId
    status
    total
    reservation
    payment
    reason
    placedAt
    updatedAt
    position
    lines {
      productId
      sku
      name
      quantity
      unitPrice
      lineTotal
    }
  }
`),Vt=j(`
  subscription ConsoleOrders($after: Position) {
    orderUpdated(after: $after) {
      ...ConsoleOrder
    }
  }
`),Lt=j(`
  query ConsoleOrderHistory($id: UUID!) {
    history(streamId: $id, first: 100) {
      edges {
        node {
          position
          version
          type
          data
          metadata
          recordedAt
        }
      }
    }
  }
`),Wt=j(`
  subscription ConsoleProjections {
    projectionsUpdated {
      name
      position
      head
      lag
      lagMillis
      status
      error
      failedPosition
      updatedAt
    }
  }
`),Gt=j(`
  mutation ConsoleVerify($name: String!) {
    verifyProjection(name: $name) {
      name
      ok
      position
      rows
      differences
      elapsedMillis
    }
  }
`),Bt=j(`
  mutation ConsoleRebuild($name: String!) {
    rebuildProjection(name: $name) {
      ...ConsoleRebuildProgress
    }
  }
`),io=j(`
  fragment ConsoleRebuildProgress on RebuildProgress {
    name
    phase
    eventsDone
    eventsTotal
    eventsPerSecond
    position
    elapsedMillis
    rows
    error
  }
`),zt=j(`
  subscription ConsoleRebuildProgress($name: String!) {
    rebuildProgress(name: $name) {
      ...ConsoleRebuildProgress
    }
  }
`),Qt=j(`
  query ConsoleProducts {
    products(first: 100, includeDiscontinued: true) {
      edges {
        node {
          id
          sku
          name
        }
      }
    }
  }
`),Jt=j(`
  query ConsoleProductTimeline($id: UUID!) {
    productTimeline(id: $id, last: 50) {
      version
      eventType
      recordedAt
      position
      price
      stock
    }
  }
`),Kt=j(`
  subscription ConsoleProduct($id: UUID!, $after: Position) {
    productUpdated(ids: [$id], after: $after) {
      id
      sku
      name
      price
      stock
      version
      position
    }
  }
`),Yt=j(`
  subscription ConsoleCluster {
    clusterUpdated {
      node
      nodes {
        id
        roles
        since
        alive
        unitsHeld
        serving {
          position
          lag
          reportedAt
        }
      }
      units {
        name
        holder
        since
      }
    }
  }
`);var Ge="ordergraph.console.token",Xt=50,Zt=60,Be=8e3,De=e=>new Date(e).toLocaleTimeString(),Sn=e=>`…${e.slice(-8)}`;function Tn({onToken:e,error:t}){let[n,s]=T(""),[i,a]=T(!1),[l,c]=T(t);return o("form",{class:"signin",onSubmit:async p=>{p.preventDefault();let d=n.trim().replace(/^Bearer\s+/i,"");a(!0);try{await ee(d,Nt,{}),e(d)}catch(u){c(u instanceof re?`${u.message} (${u.code??"no code"})`:String(u))}finally{a(!1)}},children:[o("h1",{children:"ordergraph console"}),o("p",{children:["Sign in with an admin token (",o("code",{children:"ordergraph token --sub you --role admin"}),"). It is kept in this tab only, until you sign out or close it."]}),o("label",{children:["Admin token",o("textarea",{name:"token",rows:4,value:n,onInput:p=>s(p.target.value),autocomplete:"off",spellcheck:!1})]}),o("button",{type:"submit",disabled:i||n.trim()==="",children:"Sign in"}),l&&o("p",{class:"error",role:"alert",children:l})]})}function Rn({live:e}){let[t,n]=T(null),[s,i]=T([]),[a,l]=T([]),c=pe(void 0);return z(()=>e.follow(Ht,()=>({after:c.current??null}),({dashboardUpdated:m})=>{le(m.position,c.current)&&(c.current=m.position,n(m),i(p=>[...p,Number(m.revenue)].slice(-Zt)),l(p=>[...p,m.ordersToday].slice(-Zt)))}),[e]),t?o("section",{class:"panel figures","aria-label":"figures","data-position":t.position,children:[o("h2",{children:"Figures"}),o("div",{class:"cards",children:[o("div",{class:"card",children:[o("span",{class:"card-label",children:"Revenue"}),o("span",{class:"card-value","data-testid":"revenue",children:t.revenue}),o(Le,{values:s,label:"revenue since this page opened"})]}),o("div",{class:"card",children:[o("span",{class:"card-label",children:"Orders today (UTC)"}),o("span",{class:"card-value","data-testid":"orders-today",children:t.ordersToday}),o(Le,{values:a,label:"orders today since this page opened"})]}),o("div",{class:"card wide",children:[o("span",{class:"card-label",children:"Orders per status"}),o(wt,{items:t.ordersByStatus.map(m=>({label:m.status,value:m.count}))})]}),o("div",{class:"card",children:[o("span",{class:"card-label",children:"Low stock (≤ 5)"}),o("ul",{class:"low-stock","data-testid":"low-stock",children:[t.lowStock.length===0&&o("li",{class:"muted",children:"none"}),t.lowStock.map(m=>o("li",{children:[o("code",{children:m.sku})," ",m.stock]},m.id))]})]})]})]}):o("section",{class:"panel figures",children:"Loading figures…"})}function En({live:e,token:t,selected:n,onSelect:s}){let[i,a]=T(new Map),l=pe(void 0),c=pe({selected:n,onSelect:s});c.current={selected:n,onSelect:s},z(()=>{let p=()=>{},d=!1,u=f=>{le(f.position,l.current)&&(l.current=f.position),f.id===c.current.selected&&c.current.onSelect(f),a(r=>{let g=r.get(f.id);if(g&&!le(f.position,g.order.position))return r;let b=new Map(r),_=g?g.trail:[];return b.set(f.id,{order:f,trail:_[_.length-1]===f.status?_:[..._,f.status]}),b})};return(async()=>{let f=await ee(t,Ft,{first:Xt}).catch(()=>null);if(!d){for(let r of[...f?.orders.edges??[]].reverse())u(r.node);p=e.follow(Vt,()=>({after:l.current??"0"}),r=>u(r.orderUpdated))}})(),()=>{d=!0,p()}},[e,t]);let m=Pe(()=>[...i.values()].sort((p,d)=>p.order.placedAt<d.order.placedAt?1:p.order.placedAt>d.order.placedAt?-1:0).slice(0,Xt),[i]);return o("section",{class:"panel orders","aria-label":"orders",children:[o("h2",{children:"Orders through the saga"}),m.length===0&&o("p",{class:"muted",children:"No orders yet: they appear here as they are placed."}),o("table",{children:[o("thead",{children:o("tr",{children:[o("th",{children:"order"}),o("th",{children:"user"}),o("th",{children:"total"}),o("th",{children:"saga"}),o("th",{children:"reason"}),o("th",{children:"updated"})]})}),o("tbody",{children:m.map(({order:p,trail:d})=>o("tr",{class:p.id===n?"selected":"","data-order":p.id,"data-status":p.status,"data-position":p.position,onClick:()=>s(p),children:[o("td",{children:o("code",{children:Sn(p.id)})}),o("td",{children:p.userId}),o("td",{class:"num",children:p.total}),o("td",{class:"trail",children:d.map((u,f)=>o("span",{class:`chip status-${u}${f===d.length-1?" current":""}`,children:u},u))}),o("td",{class:"reason",children:p.reason??""}),o("td",{children:De(p.updatedAt)})]},p.id))})]})]})}function en(e,t){let n=e.metadata?.[t];return typeof n=="string"?n:""}function $n(e){let n=e.data?.reason;return typeof n=="string"?n:""}function On({token:e,order:t}){let[n,s]=T(null),[i,a]=T(null);return z(()=>{let l=!1;return ee(e,Lt,{id:t.id}).then(c=>!l&&s(c.history.edges.map(m=>m.node))).catch(c=>!l&&a(String(c))),()=>{l=!0}},[e,t.id,t.position]),o("section",{class:"panel details","aria-label":"order details","data-order":t.id,children:[o("h2",{children:["Order ",o("code",{children:t.id})]}),o("dl",{class:"facts",children:[o("dt",{children:"status"}),o("dd",{"data-testid":"detail-status",children:t.status}),o("dt",{children:"user"}),o("dd",{children:t.userId}),o("dt",{children:"reservation"}),o("dd",{children:t.reservation}),o("dt",{children:"payment"}),o("dd",{children:t.payment}),o("dt",{children:"total"}),o("dd",{children:t.total}),t.reason&&o(J,{children:[o("dt",{children:"reason"}),o("dd",{children:t.reason})]})]}),o("table",{class:"lines",children:o("tbody",{children:t.lines.map(l=>o("tr",{children:[o("td",{children:[o("code",{children:l.sku})," ",l.name]}),o("td",{class:"num",children:[l.quantity," × ",l.unitPrice]}),o("td",{class:"num",children:l.lineTotal})]},l.productId))})}),o("h3",{children:"History"}),i&&o("p",{class:"error",children:i}),o("table",{class:"history",children:[o("thead",{children:o("tr",{children:[o("th",{children:"#"}),o("th",{children:"event"}),o("th",{children:"when"}),o("th",{children:"who"}),o("th",{children:"why"})]})}),o("tbody",{children:(n??[]).map(l=>o("tr",{"data-event":l.type,children:[o("td",{children:l.version}),o("td",{children:l.type}),o("td",{children:De(l.recordedAt)}),o("td",{children:en(l,"userId")||"the saga"}),o("td",{children:[$n(l),o("span",{class:"muted",children:[" ",en(l,"causationId")]})]})]},l.position))})]})]})}var tn={IDLE:0,REPLAYING:1,SWAPPING:2,DONE:3,FAILED:3};function An({live:e,token:t}){let[n,s]=T([]),[i,a]=T({}),[l,c]=T({});z(()=>e.follow(Wt,()=>({}),u=>s(u.projectionsUpdated)),[e]);let m=u=>a(f=>{let r=f[u.name];if(r&&(tn[u.phase]<tn[r.phase]||u.phase===r.phase&&u.eventsDone<r.eventsDone))return f;let g=r?.seen??[];return{...f,[u.name]:{...u,seen:g[g.length-1]===u.phase?g:[...g,u.phase]}}}),p=async u=>{a(({[u]:r,...g})=>g);let f=()=>{};await new Promise(r=>{let g=!0,b=setTimeout(r,5e3);f=e.once(zt,{name:u},_=>{if(g){g=!1,clearTimeout(b),r();return}m(_.rebuildProgress),(_.rebuildProgress.phase==="DONE"||_.rebuildProgress.phase==="FAILED")&&f()})});try{m((await ee(t,Bt,{name:u})).rebuildProjection)}catch(r){f(),c(g=>({...g,[u]:String(r)}))}},d=async u=>{c(f=>({...f,[u]:"verifying…"}));try{let f=(await ee(t,Gt,{name:u})).verifyProjection;c(r=>({...r,[u]:f}))}catch(f){c(r=>({...r,[u]:String(f)}))}};return o("section",{class:"panel projections","aria-label":"projections",children:[o("h2",{children:"Projections"}),o("table",{children:[o("thead",{children:o("tr",{children:[o("th",{children:"view"}),o("th",{children:"position"}),o("th",{children:"head"}),o("th",{children:"lag"}),o("th",{children:"lag (s)"}),o("th",{children:"status"}),o("th",{})]})}),o("tbody",{children:n.map(u=>{let f=i[u.name],r=l[u.name],g=f&&f.eventsTotal>0?Math.round(f.eventsDone/f.eventsTotal*100):f?.phase==="DONE"?100:0;return o("tr",{"data-projection":u.name,"data-status":u.status,"data-lag":u.lag,children:[o("td",{children:[o("strong",{children:u.name}),u.error&&o("div",{class:"error",children:`failed at ${u.failedPosition??"?"}: ${u.error}`})]}),o("td",{class:"num","data-testid":"position",children:u.position}),o("td",{class:"num",children:u.head}),o("td",{class:"num",children:u.lag}),o("td",{class:"num",children:(u.lagMillis/1e3).toFixed(1)}),o("td",{children:o("span",{class:`chip state-${u.status}`,children:u.status})}),o("td",{class:"actions",children:[o("button",{type:"button",onClick:()=>d(u.name),children:"Verify"}),o("button",{type:"button",onClick:()=>p(u.name),children:"Rebuild"}),r!==void 0&&o("div",{class:"verify","data-testid":"verify","data-ok":typeof r=="string"?void 0:String(r.ok),children:typeof r=="string"?r:r.ok?`equal to a replay: ${r.rows} rows at ${r.position} (${r.elapsedMillis} ms)`:`${r.differences} rows differ from a replay`}),f&&f.phase&&o("div",{class:"rebuild","data-testid":"rebuild","data-phase":f.phase,"data-seen":f.seen.join(" "),children:[o("progress",{max:100,value:g}),o("span",{children:[f.phase," ",f.eventsDone,"/",f.eventsTotal," events",f.phase==="DONE"?`, ${f.rows} rows`:"",f.error?`: ${f.error}`:""]})]})]})]},u.name)})})]})]})}var nn=e=>e??"nobody",In=e=>e.startsWith("projector:")?e.slice(10):e.replace(":"," ");function Un({live:e}){let[t,n]=T(null),[s,i]=T({}),a=pe(null);if(z(()=>e.follow(Yt,()=>({}),({clusterUpdated:p})=>{let d=a.current;if(a.current=new Map(p.units.map(r=>[r.name,r.holder??null])),n(p),!d)return;let u=Date.now(),f=p.units.filter(r=>d.has(r.name)&&d.get(r.name)!==(r.holder??null));f.length!==0&&i(r=>{let g={...r};for(let b of f){let _=d.get(b.name)??null,v=g[b.name],h=v&&u-v.at<Be&&v.path[v.path.length-1]===_?[...v.path,b.holder??null]:[_,b.holder??null];g[b.name]={path:h,at:u}}return g})}),[e]),z(()=>{let p=Object.values(s).map(u=>u.at);if(p.length===0)return;let d=setTimeout(()=>i(u=>Object.fromEntries(Object.entries(u).filter(([,f])=>Date.now()-f.at<Be))),Math.max(0,Math.min(...p)+Be-Date.now())+50);return()=>clearTimeout(d)},[s]),!t)return o("section",{class:"panel cluster",children:"Loading the cluster…"});let l=p=>t.units.filter(d=>d.holder===p),c=t.units.filter(p=>!p.holder).length,m=Object.keys(s).length;return o("section",{class:"panel cluster","aria-label":"cluster","data-node":t.node,children:[o("h2",{children:["Cluster",o("span",{class:"muted summary",children:[" ",t.nodes.filter(p=>p.alive).length," of ",t.nodes.length," replicas alive · ",t.units.length," units",c>0?`, ${c} held by nobody`:", all held",m>0?` · ${m} just moved`:""]})]}),o("div",{class:"cluster-tables",children:[o("table",{class:"replicas",children:[o("thead",{children:o("tr",{children:[o("th",{children:"replica"}),o("th",{children:"alive"}),o("th",{children:"roles"}),o("th",{children:"units held"}),o("th",{children:"serving"}),o("th",{children:"lag"}),o("th",{children:"since"})]})}),o("tbody",{children:t.nodes.map(p=>o("tr",{class:p.alive?"":"gone","data-replica":p.id,"data-alive":String(p.alive),"data-units":p.unitsHeld,children:[o("td",{children:[o("code",{children:p.id}),p.id===t.node&&o("span",{class:"muted",children:" (serving this page)"})]}),o("td",{children:o("span",{class:`chip ${p.alive?"state-RUNNING":"state-FAILED"}`,children:p.alive?"alive":"gone"})}),o("td",{children:p.roles.join(", ")}),o("td",{children:[o("span",{class:"num-inline",children:p.unitsHeld})," ",l(p.id).map(d=>o("span",{class:`chip unit${s[d.name]?" moved":""}`,children:In(d.name)},d.name))]}),o("td",{class:"num","data-testid":"serving",children:p.serving?.position??"–"}),o("td",{class:"num",children:p.serving?p.serving.lag:"–"}),o("td",{children:De(p.since)})]},p.id))})]}),o("table",{class:"units",children:[o("thead",{children:o("tr",{children:[o("th",{children:"unit"}),o("th",{children:"holder"}),o("th",{children:"since"})]})}),o("tbody",{children:t.units.map(p=>{let d=s[p.name];return o("tr",{class:d?"moved":p.holder?"":"unheld","data-unit":p.name,"data-holder":p.holder??"","data-moved":d?d.path.map(nn).join(" → "):void 0,children:[o("td",{children:o("code",{children:p.name})}),o("td",{children:[p.holder?o("code",{children:p.holder}):o("span",{class:"error",children:"nobody"}),d&&o("span",{class:"failover",children:[" ",`moved: ${d.path.map(nn).join(" → ")}`]})]}),o("td",{children:p.since?De(p.since):""})]},p.name)})})]})]})]})}function jn({live:e,token:t}){let[n,s]=T([]),[i,a]=T(""),[l,c]=T([]),m=()=>ee(t,Qt,{}).then(u=>s(u.products.edges.map(f=>f.node))).catch(()=>{});z(()=>{m()},[t]),z(()=>{if(!i){c([]);return}let u,f=!1,r=e.follow(Kt,()=>({id:i,after:u??null}),({productUpdated:g})=>{le(g.position,u)&&(u=g.position,ee(t,Jt,{id:i}).then(b=>!f&&c(b.productTimeline)).catch(()=>{}))});return()=>{f=!0,r()}},[e,t,i]);let p=l.map(u=>({t:Date.parse(u.recordedAt),v:u.stock})),d=l.map(u=>({t:Date.parse(u.recordedAt),v:Number(u.price)}));return o("section",{class:"panel product","aria-label":"product over time",children:[o("h2",{children:"A product over time"}),o("select",{name:"product",value:i,onFocus:m,onChange:u=>a(u.target.value),children:[o("option",{value:"",children:"choose a product…"}),n.map(u=>o("option",{value:u.id,children:[u.sku," · ",u.name]},u.id))]}),i&&o("div",{class:"series","data-product":i,"data-versions":l.map(u=>u.version).join(" "),children:[o("h3",{children:"Stock"}),o(We,{points:p,label:"stock after each event"}),o("h3",{children:"Price"}),o(We,{points:d,label:"price after each event",step:!0}),o("p",{class:"muted",children:["The last ",l.length," events of the product, replayed from the log (",o("code",{children:"productTimeline"}),")."]})]})]})}function qn({token:e,onSignOut:t}){let[n,s]=T("connecting"),[i,a]=T(null),l=Pe(()=>new ke(e,s,m=>t(m.message)),[e]);z(()=>()=>l.close(),[l]);let c=m=>a(p=>p?.id===m.id&&!le(m.position,p.position)?p:m);return o(J,{children:[o("header",{children:[o("h1",{children:"ordergraph console"}),o("span",{class:`connection ${n}`,"data-testid":"connection","data-state":n,children:n==="live"?"live":n==="connecting"?"connecting…":"reconnecting…"}),o("button",{type:"button",class:"signout",onClick:()=>t(null),children:"Sign out"})]}),o("main",{children:[o(Rn,{live:l}),o("div",{class:"columns",children:[o(En,{live:l,token:e,selected:i?.id??null,onSelect:c}),i?o(On,{token:e,order:i}):o("section",{class:"panel details muted",children:"Click an order for its details and history."})]}),o(An,{live:l,token:e}),o(Un,{live:l}),o(jn,{live:l,token:e})]})]})}function Mn(){let[e,t]=T(()=>sessionStorage.getItem(Ge)),[n,s]=T(null);return e?o(qn,{token:e,onSignOut:i=>{sessionStorage.removeItem(Ge),s(i),t(null)}}):o(Tn,{error:n,onToken:i=>{sessionStorage.setItem(Ge,i),s(null),t(i)}})}var on=document.getElementById("console");on&&it(o(Mn,{}),on);
