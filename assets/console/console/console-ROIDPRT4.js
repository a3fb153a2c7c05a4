var k,ze,tt,K,De,be,Je,_e,Ke,Te,Se,ot,ce=Symbol.for("pv"),ve={},xe=[],rt=/^m(i|n|o|s|text|space)$/,Re=Array.isArray,Ye=xe.slice,oe=Object.assign;function te(e){e&&e.parentNode&&e.remove()}function ge(e,n,t,i,s){var a={type:e,props:n,key:t,ref:i,__k:null,__:null,__b:0,__e:null,__c:null,constructor:ce,__v:s||++ze,__i:-1,__u:0};return!s&&k.vnode&&k.vnode(a),a}function z(e){return e.children}function ye(e,n){this.props=e,this.context=n,this.__g=0}function Y(e,n){if(n==null)return e.__&&Y(e.__,e.__i+1);for(var t;n<e.__k.length;n++)if((t=e.__k[n])&&t.__e)return t.__e;return typeof e.type!="function"||e.props.__P?null:Y(e)}function st(e){var n,t=e.__v,i=t.__e,s=[],a=[],l=e.__P;l&&((n=oe({constructor:ce},t)).__v=t.__v+1,k.vnode&&k.vnode(n),Ee(l,n,t,e.__n,l.namespaceURI,32&t.__u?[i]:null,s,i||Y(t),32&t.__u,a),n.__v=t.__v,n.__.__k[n.__i]=n,on(s,n,a),t.__=t.__e=null,n.__e!=i&&Xe(n))}function Xe(e){if((e=e.__)&&e.__c&&!e.props.__P)return e.__e=null,e.__k.some(function(n){return n&&(e.__e=n.__e)}),Xe(e)}function Be(e){(8&e.__g||(e.__g|=8,K.push(e),be++))&&De==k.debounceRendering||((De=k.debounceRendering)||queueMicrotask)(Ze)}function Ze(){try{for(var e,n=1;K.length;)K.length>n&&K.sort(Je),e=K.shift(),n=K.length,8&e.__g&&st(e)}finally{(be=K.length)&&(De||queueMicrotask)(Ze)}}function en(e,n,t,i,s,a,l,c,f,_,u){var d,p,r,m,x,g,P=i.__k||xe,h=n.length;for(f=it(t,n,P,f,h),d=0;d<h;d++)(r=t.__k[d])!=null&&(p=~r.__i&&P[r.__i]||ve,r.__i=d,g=Ee(e,r,p,s,a,l,c,f,_,u),m=r.__e,(p.ref!=r.ref||8&p.__u)&&(p.ref&&$e(p.ref,null,r,p),r.ref&&u.push(r.ref,r.__c||m,r)),x=x||m,4&r.__u?(f=nn(r,f,e,!p.__v),p.__e&&(p.__e=null)):typeof r.type=="function"&&g!==void 0?f=g:m&&(f=m.nextSibling),r.__u&=-21);return t.__e=x,f}function it(e,n,t,i,s){var a,l,c,f,_,u,d,p,r,m=t.length,x=m,g=0,P=0,h=e.__k=Array(s);for(a=0;a<s;a++)(l=n[a])!=null&&typeof l!="boolean"&&typeof l!="function"?(typeof l!="object"||l.constructor===String?l=h[a]=ge(null,l):Re(l)?l=h[a]=ge(z,{children:l}):l.constructor===ce&&l.__b?l=h[a]=ge(l.type,l.props,l.key,l.ref,l.__v):h[a]=l,f=a+g,l.__=e,l.__b=e.__b+1,c=null,~(_=l.__i=at(l,t,f,x))&&(x--,(c=t[_])&&(c.__u|=2)),c&&c.__v?(l.__u|=16,_==f-1?g--:_==f+1?g++:_!=f&&(_>f?g--:g++,P=1)):(~_||(s>m?g--:s<m&&g++),typeof l.type!="function"&&(l.__u|=4))):h[a]=null;if(P){for(u=[],d=[],a=0;a<s;a++)if((l=h[a])&&16&l.__u){for(g=0,p=u.length;g<p;)u[r=g+p>>1]<l.__i?g=r+1:p=r;u[g]=l.__i,d[a]=g+1}for(g=u.length;a--;)d[a]&&(d[a]==g?g--:h[a].__u|=4)}if(x)for(a=0;a<m;a++)!(c=t[a])||2&c.__u||(c.__e==i&&(i=Y(c)),Oe(c,c));return i}function nn(e,n,t,i){var s,a,l,c;if(typeof e.type=="function"){if(e.props.__P)return n;if(s=e.__k)for(a=0;a<s.length;a++)s[a]&&(s[a].__=e,n=nn(s[a],n,t,!1));return n}for(n&&!n.parentNode&&(n=Y(e))&&!n.parentNode&&(n=null),l=e.__e,c=n;c&&c.nodeType==8;)c=c.nextSibling;for(l!=c&&(!i&&t.moveBefore&&l.parentNode?t.moveBefore(l,n):t.insertBefore(l,n||null)),n=l;(n=n&&n.nextSibling)&&n.nodeType==8&&!n.data.startsWith("$s"););return n}function at(e,n,t,i){var s,a=e.key,l=e.type,c=n[t],f=c&&!(2&c.__u);if(c===null&&a==null||f&&a==c.key&&l==c.type)return t;if(i>(f?1:0)){for(s=t-1;s>=0;s--)if((c=n[s])&&!(2&c.__u)&&a==c.key&&l==c.type)return s;for(s=t+1;s<n.length;s++)if((c=n[s])&&!(2&c.__u)&&a==c.key&&l==c.type)return s}return-1}function Qe(e,n,t){t==null&&(t=""),n[0]=="-"?e.setProperty(n,t):e[n]=t}function me(e,n,t,i,s){var a,l;if(n=="style")if(typeof t=="string")e.style.cssText=t;else{if(typeof i=="string"&&(e.style.cssText=i=""),i)for(n in i)t&&n in t||Qe(e.style,n);if(t)for(n in t)i&&t[n]==i[n]||Qe(e.style,n,t[n])}else if(n[0]=="o"&&n[1]=="n")typeof t!="function"&&(t=null),typeof i!="function"&&(i=null),(e.__e||(e.__e={}))[n]=t,t&&i||(l=Se[n]||(Se[n]=lt(n)),(e.__a||(e.__a={}))[n]=Te,a=n!=(n=n.replace(Ke,"$1")),(n=n.slice(2))[0]<"a"&&(n=n.toLowerCase()),t?e.addEventListener(n,l,a):e.removeEventListener(n,l,a));else{if(s=="http://www.w3.org/2000/svg")n=n.replace(/xlink(H|:h)/,"h").replace(/sName$/,"s");else if(n!="width"&&n!="height"&&n!="href"&&n!="list"&&n!="form"&&n!="tabIndex"&&n!="download"&&n!="rowSpan"&&n!="colSpan"&&n!="role"&&n!="popover"&&n in e)try{return void(e[n]=t??"")}catch{}if(typeof t=="function")return;t==null||t===!1&&n[4]!="-"?e.removeAttribute(n):e.setAttribute(n,n=="popover"&&t==1?"":t)}}function lt(e){return function(n){var t=this.__e;if(t){if(t=t[e],n[_e]==null)n[_e]=Te++;else if(n[_e]<this.__a[e])return;return t(k.event?k.event(n):n)}}}function Ee(e,n,t,i,s,a,l,c,f,_){var u,d,p,r,m,x,g,P,h,b,D,L,W,J,N,ne,G,B,V=n.type;if(n.constructor!==ce)return null;128&t.__u&&(f=32&t.__u,u=t.__c.__z)&&(n.__u|=f,d=a=[],u.nodeType==8?c=he(u,a):a.push(u),c=a[0]||c),(u=k.__b)&&u(n);e:if(typeof V=="function"){p=l.length;try{if(P=n.props,h=(u=V.prototype)&&u.render,b=(u=V.contextType)&&i[u.__c],D=u?b?b.props.value:u.__:i,(r=t.__c)?(n.__c=r,2&r.__g&&(r.__g|=1)):(h?n.__c=r=new V(P,D):(n.__c=r=new ye(P,D),r.constructor=V,r.render=dt),b&&b.sub(r),r.state||(r.state={}),r.__n=i,r.__g|=8,r.__h=[],r.__k=[]),h&&(r.__s||(r.__s=r.state),V.getDerivedStateFromProps&&(r.__s==r.state&&(r.__s=oe({},r.__s)),oe(r.__s,V.getDerivedStateFromProps(P,r.__s)))),m=r.props,x=r.state,r.__v=n,t.__c){if(P!==m&&h&&!V.getDerivedStateFromProps&&r.componentWillReceiveProps&&r.componentWillReceiveProps(P,D),n.__v==t.__v&&!(8&r.__g)||!(4&r.__g)&&r.shouldComponentUpdate&&r.shouldComponentUpdate(P,r.__s,D)===!1){n.__v!=t.__v&&(r.props=P,r.state=r.__s,r.__g&=-9),n.__e=t.__e,n.__k=t.__k,n.__k.some(function(U){U&&(U.__=n)}),xe.push.apply(r.__h,r.__k),r.__k=[],r.__h.length&&l.push(r),c=Y(t);break e}r.componentWillUpdate&&r.componentWillUpdate(P,r.__s,D),h&&r.componentDidUpdate&&r.__h.push(function(){r.componentDidUpdate(m,x,g)})}else h&&!V.getDerivedStateFromProps&&r.componentWillMount&&r.componentWillMount(),h&&r.componentDidMount&&r.__h.push(r.componentDidMount);r.context=D,r.props=P,r.__P=e,r.__g&=-5,L=k.__r,W=h?25:0;do r.__g&=-9,L&&L(n),u=r.render(r.props,r.state=r.__s,r.context);while(8&r.__g&&++W<25);h&&(xe.push.apply(r.__h,r.__k),r.__k=[]),r.state=r.__s,r.getChildContext&&(i=oe({},i,r.getChildContext())),h&&t.__c&&r.getSnapshotBeforeUpdate&&(g=r.getSnapshotBeforeUpdate(m,x)),J=u&&u.type===z&&u.key==null?u.props.children:u,P.__P&&(u=c,s=(e=P.__P).namespaceURI,f=a=null,t.props&&t.props.__P!=e&&(t.__k.some(function(U){U&&Oe(U,U)}),t.__k=null),c=t.__k?Y(t,0):null),c=en(e,Re(J)?J:[J],n,t,i,s,a,l,c,f,_),P.__P&&(n.__e=null,c=u),n.__u&=-161,d&&d.some(te),r.__h.length&&l.push(r),1&r.__g&&(r.__g&=-4)}catch(U){if(l.length=p,n.__v=null,f||a)if(U&&U.then){if(n.__u|=128|f,a){for(~(G=a.indexOf(c||void 0))||(G=a.length);(B=a[G-1])&&B.nodeType==8;)G--;for(;G<a.length;G++)if(B=a[G])if(a[G]=null,N){if(B==ne)break}else{if(B.nodeType!=8)break;B.data.startsWith("$s")&&(ne=he(N=B))}}if(!N){for(;c&&c.nodeType==8&&c.nextSibling;)c=c.nextSibling;N=c}(u=he(N=n.__c.__z||(n.__c.__z=N)))?(n.__e=N,c=u):n.__e=c,c=c&&c.nextSibling}else a&&a.some(te);else n.__e=t.__e;n.__k||(n.__k=t.__k||[]),U&&U.then||tn(n),k.__e(U,n,t)}}else c=n.__e=ct(t.__e,n,t,i,s,a,l,f,_,e);return(u=k.diffed)&&u(n),c}function he(e,n){if(e&&e.nodeType==8&&e.data.startsWith("$s"))for(var t=1;e=e.nextSibling;){if(e.nodeType==8){if(e.data.startsWith("$s"))t++;else if(e.data.startsWith("/$s")&&!--t)return e}n&&n.push(e)}}function tn(e){e&&(e.__c&&(e.__c.__g|=4),e.__k&&e.__k.some(tn))}function on(e,n,t){for(var i=0;i<t.length;)$e(t[i++],t[i++],t[i++]);k.__c&&k.__c(n,e),e.some(function(s){try{e=s.__h,s.__h=[],e.some(function(a){a.call(s)})}catch(a){k.__e(a,s.__v)}})}function ct(e,n,t,i,s,a,l,c,f,_){var u,d,p,r,m,x,g,P,h=t.props||ve,b=n.props,D=n.type;if(D=="svg"?s="http://www.w3.org/2000/svg":D=="math"?s="http://www.w3.org/1998/Math/MathML":s||(s="http://www.w3.org/1999/xhtml"),a){for(u=0;u<a.length;u++)if((m=a[u])&&(D?m.localName==D:m.nodeType==3)){e=m,a[u]=null;break}}if(!e){if(P=_.ownerDocument||document,!D)return P.createTextNode(b);e=P.createElementNS(s,D,b.is?b:_),c&&(k.__m&&k.__m(n,a),c=!1),a=null}if(D){if(_=D=="template"&&e.content||e,a=D=="textarea"&&b.defaultValue!=null?null:a&&Ye.call(_.childNodes),!c&&a)for(h={},u=0;u<e.attributes.length;u++)h[(m=e.attributes[u]).name]=m.value;for(u in h)m=h[u],u=="dangerouslySetInnerHTML"?p=m:u=="children"||u in b||u=="value"&&"defaultValue"in b||u=="checked"&&"defaultChecked"in b||me(e,u,null,m,s);for(u in b)m=b[u],u=="children"?r=m:u=="dangerouslySetInnerHTML"?d=m:u=="value"?x=m:u=="checked"?g=m:c&&typeof m!="function"||h[u]===m||me(e,u,m,h[u],s);d?(c||p&&(d.__html==p.__html||d.__html==e.innerHTML)||(e.innerHTML=d.__html),n.__k=[]):(p&&(e.textContent=""),(D=="foreignObject"||s=="http://www.w3.org/1998/Math/MathML"&&rt.test(D))&&(s="http://www.w3.org/1999/xhtml"),en(_,Re(r)?r:[r],n,t,i,s,a,l,a?a[0]:t.__k&&Y(t,0),c,f),a&&a.some(te)),c&&D!="textarea"||(u="value",D=="progress"&&x==null?e.removeAttribute(u):x==null||x===e[u]&&(D!="progress"||x)||me(e,u,x,h[u],s),u="checked",g!=null&&g!=e[u]&&me(e,u,g,h[u],s))}else h===b||c&&e.data==b||(e.data=b);return e}function $e(e,n,t,i){try{typeof e=="function"?n?n.__x=e(n)||1:i&&(i=i.__c||i.__e)&&(n=i.__x)&&(i.__x=null,typeof n=="function"?n():e(null)):e.current=n}catch(s){k.__e(s,t)}}function Oe(e,n,t){var i,s,a,l;if(k.unmount&&k.unmount(e),!(i=e.ref)||i.current&&i.current!=e.__e||$e(i,null,n,e),i=e.__c){if(i.componentWillUnmount)try{i.componentWillUnmount()}catch(c){k.__e(c,n)}i.__P=i.__n=null}if(i=e.__k)for(l=0;l<i.length;l++)i[l]&&Oe(i[l],n,typeof e.type!="function"||t&&!e.props.__P);!t&&(i=e.__c)&&(i=i.__z)&&(s=he(i,a=[]))&&(i==e.__e&&a.some(te),te(s),te(i)),t||te(e.__e),e.__e=e.__c=e.__=null}function dt(e,n,t){return this.constructor(e,t)}function rn(e,n){var t,i,s,a;k.__&&k.__(e,n),n.nodeType==9&&(n=n.documentElement),i=(t=e&&32&e.__u)?null:n.__k,n.__k=ge(z,{children:[e]}),s=[],a=[],Ee(n,n.__k,i||ve,ve,n.namespaceURI,i?null:n.firstChild?Ye.call(n.childNodes):null,s,i?i.__e:n.firstChild,t,a),on(s,n.__k,a),n.__k.props.children=null}k={__e:function(e,n,t,i){for(var s,a,l;n=n.__;)if((s=n.__c)&&!(1&s.__g)){s.__g|=4;try{if((l=(a=s.constructor)&&a.getDerivedStateFromError)&&s.setState(a.getDerivedStateFromError(e)),s.componentDidCatch&&(s.componentDidCatch(e,i||{}),l=1),l&&8&s.__g)return void(s.__g|=2)}catch(c){e=c}}throw be=0,e}},ze=0,tt=function(e){return e!=null&&e.constructor===ce},ye.prototype.setState=function(e,n){var t=this.__s;t&&t!=this.state||(t=this.__s=oe({},this.state)),typeof e=="function"&&(e=e(oe({},t),this.props)),e&&(oe(t,e),this.__v&&(n&&this.__k.push(n),Be(this)))},ye.prototype.forceUpdate=function(e){this.__v&&(this.__g|=4,e&&this.__h.push(e),Be(this))},ye.prototype.render=z,K=[],be=0,Je=function(e,n){return e.__v.__b-n.__v.__b},_e=Symbol(),Ke=/(PointerCapture)$|Capture$/i,Te=0,Se={},ot=0;var ue,O,Ie,sn,Ae=Object.is,Ce=0,_n=[],qe=[],E=k,an=E.__b,ln=E.__r,cn=E.diffed,dn=E.__c,un=E.unmount,pn=E.__;function je(e,n){E.__h&&E.__h(O,e,Ce||n),Ce=0;var t=O.__H||(O.__H={__:[],__h:[]});return e>=t.__.length&&t.__.push({}),t.__[e]}function $(e){return Ce=1,ut(yn,e)}function ut(e,n,t){var i=je(ue++,2);if(i.t=e,!i.__c&&(i.__=[t?t(n):yn(void 0,n),function(a){var l=(i.__N||i.__)[0],c=i.t(l,a);Ae(l,c)||(i.__N=[c,i.__[1]],i.__c.setState({}))}],i.__c=O,!O.__f)){O.__f=!0;var s=O.shouldComponentUpdate;O.shouldComponentUpdate=function(a,l,c){var f=this.__H;if(!f)return!0;var _=!1,u=this.props!=a;if(f.__.some(function(p){p.__N&&(_=!0,Ae(p.__[0],p.__N[0])||(u=!0))}),s){var d=s.call(this,a,l,c);return _?d||u:d}return!_||u}}return i.__}function X(e,n){var t=je(ue++,3);!E.__s&&gn(t.__H,n)&&(t.__P=!0,t.__=e,t.u=n,O.__H.__h.push(t))}function Pe(e){return Ce=5,we(function(){return{current:e}},[])}function we(e,n){var t=je(ue++,7);return gn(t.__H,n)&&(t.__=e(),t.__H=n),t.__}function pt(){var e;do{for(;e=qe.shift();)try{de(e)}catch(t){E.__e(t,{__:(e=e.__P)&&e.__v})}for(;e=_n.shift();){var n=e.__H;if(e.__P&&n)try{n.__h.some(de),n.__h.some(Ue),n.__h=[]}catch(t){n.__h=[],E.__e(t,e.__v)}}}while(qe.length)}E.__b=function(e){O=null,an&&an(e)},E.__=function(e,n){e&&n.__k&&n.__k.__m&&(e.__m=n.__k.__m),pn&&pn(e,n)},E.__r=function(e){ln&&ln(e),ue=0;var n=(O=e.__c).__H;n&&(Ie==O?O.__h=[]:(n.__h.some(de),n.__h.some(Ue),ue=0),n.__h=[],n.__.some(function(t){t.__N&&(t.__=t.__N),t.u=t.__N=void 0})),Ie=O},E.diffed=function(e){cn&&cn(e);var n=e.__c;n&&n.__H&&(n.__H.__h.length&&mn(_n.push(n)),n.__H.__.some(function(t){t.u&&(t.__H=t.u)})),Ie=O=null},E.__c=function(e,n){n.some(function(t){try{t.__h.some(de),t.__h=t.__h.filter(function(i){return!i.__||Ue(i)})}catch(i){t.__h=[function(){throw i}]}}),dn&&dn(e,n)},E.unmount=function(e){un&&un(e);var n,t,i=e.__c;i&&i.__H&&(i.__H.__.some(function(s){try{if(s.__P&&s.__c){if(t===void 0){for(t=e.__;t&&(!t.__c||!t.__c.__P);)t=t.__;t=t&&t.__c}s.__P=t,mn(qe.push(s))}else de(s)}catch(a){n=a}}),i.__H=void 0,n&&E.__e(n,i.__v))};var fn=typeof requestAnimationFrame=="function";function ft(e){var n,t=function(){clearTimeout(i),fn&&cancelAnimationFrame(n),setTimeout(e)},i=setTimeout(t,35);fn&&(n=requestAnimationFrame(t))}function mn(e){e!=1&&sn==E.requestAnimationFrame||((sn=E.requestAnimationFrame)||ft)(pt)}function de(e){var n=O,t=e.__c;typeof t=="function"&&(e.__c=void 0,t()),O=n}function Ue(e){var n=O;e.__c=e.__(),O=n}function gn(e,n){return!e||e.length!=n.length||n.some(function(t,i){return!Ae(t,e[i])})}function yn(e,n){return typeof n=="function"?n(e):n}function M(e){return e===null?"null":Array.isArray(e)?"array":typeof e}function Z(e){return M(e)==="object"}function mt(e){return Array.isArray(e)&&e.length>0&&e.every(n=>"message"in n)}function Me(e,n){return e.length<124?e:n}var hn="graphql-transport-ws";var H=(e=>(e[e.InternalServerError=4500]="InternalServerError",e[e.InternalClientError=4005]="InternalClientError",e[e.BadRequest=4400]="BadRequest",e[e.BadResponse=4004]="BadResponse",e[e.Unauthorized=4401]="Unauthorized",e[e.Forbidden=4403]="Forbidden",e[e.SubprotocolNotAcceptable=4406]="SubprotocolNotAcceptable",e[e.ConnectionInitialisationTimeout=4408]="ConnectionInitialisationTimeout",e[e.ConnectionAcknowledgementTimeout=4504]="ConnectionAcknowledgementTimeout",e[e.SubscriberAlreadyExists=4409]="SubscriberAlreadyExists",e[e.TooManyInitialisationRequests=4429]="TooManyInitialisationRequests",e))(H||{}),F=(e=>(e.ConnectionInit="connection_init",e.ConnectionAck="connection_ack",e.Ping="ping",e.Pong="pong",e.Subscribe="subscribe",e.Next="next",e.Error="error",e.Complete="complete",e))(F||{});function bn(e){if(!Z(e))throw new Error(`Message is expected to be an object, but got ${M(e)}`);if(!e.type)throw new Error("Message is missing the 'type' property");if(typeof e.type!="string")throw new Error(`Message is expects the 'type' property to be a string, but got ${M(e.type)}`);switch(e.type){case"connection_init":case"connection_ack":case"ping":case"pong":{if(e.payload!=null&&!Z(e.payload))throw new Error(`"${e.type}" message expects the 'payload' property to be an object or nullish or missing, but got "${e.payload}"`);break}case"subscribe":{if(typeof e.id!="string")throw new Error(`"${e.type}" message expects the 'id' property to be a string, but got ${M(e.id)}`);if(!e.id)throw new Error(`"${e.type}" message requires a non-empty 'id' property`);if(!Z(e.payload))throw new Error(`"${e.type}" message expects the 'payload' property to be an object, but got ${M(e.payload)}`);if(typeof e.payload.query!="string")throw new Error(`"${e.type}" message payload expects the 'query' property to be a string, but got ${M(e.payload.query)}`);if(e.payload.variables!=null&&!Z(e.payload.variables))throw new Error(`"${e.type}" message payload expects the 'variables' property to be a an object or nullish or missing, but got ${M(e.payload.variables)}`);if(e.payload.operationName!=null&&M(e.payload.operationName)!=="string")throw new Error(`"${e.type}" message payload expects the 'operationName' property to be a string or nullish or missing, but got ${M(e.payload.operationName)}`);if(e.payload.extensions!=null&&!Z(e.payload.extensions))throw new Error(`"${e.type}" message payload expects the 'extensions' property to be a an object or nullish or missing, but got ${M(e.payload.extensions)}`);break}case"next":{if(typeof e.id!="string")throw new Error(`"${e.type}" message expects the 'id' property to be a string, but got ${M(e.id)}`);if(!e.id)throw new Error(`"${e.type}" message requires a non-empty 'id' property`);if(!Z(e.payload))throw new Error(`"${e.type}" message expects the 'payload' property to be an object, but got ${M(e.payload)}`);break}case"error":{if(typeof e.id!="string")throw new Error(`"${e.type}" message expects the 'id' property to be a string, but got ${M(e.id)}`);if(!e.id)throw new Error(`"${e.type}" message requires a non-empty 'id' property`);if(!mt(e.payload))throw new Error(`"${e.type}" message expects the 'payload' property to be an array of GraphQL errors, but got ${JSON.stringify(e.payload)}`);break}case"complete":{if(typeof e.id!="string")throw new Error(`"${e.type}" message expects the 'id' property to be a string, but got ${M(e.id)}`);if(!e.id)throw new Error(`"${e.type}" message requires a non-empty 'id' property`);break}default:throw new Error(`Invalid message 'type' property "${e.type}"`)}return e}function vn(e,n){return bn(typeof e=="string"?JSON.parse(e,n):e)}function ae(e,n){return bn(e),JSON.stringify(e,n)}function He(e){let{url:n,connectionParams:t,lazy:i=!0,onNonLazyError:s=console.error,lazyCloseTimeout:a=0,keepAlive:l=0,disablePong:c,connectionAckWaitTimeout:f=0,retryAttempts:_=5,retryWait:u=async function(S){let y=Math.pow(2,S);await new Promise(w=>setTimeout(w,y*1e3+Math.floor(Math.random()*2700+300)))},shouldRetry:d=Ne,on:p,webSocketImpl:r,generateID:m=function(){return"xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".replace(/[xy]/g,S=>{let y=Math.random()*16|0;return(S=="x"?y:y&3|8).toString(16)})},jsonMessageReplacer:x,jsonMessageReviver:g}=e,P;if(r){if(!gt(r))throw new Error("Invalid WebSocket implementation provided");P=r}else typeof WebSocket<"u"?P=WebSocket:typeof global<"u"?P=global.WebSocket||global.MozWebSocket:typeof window<"u"&&(P=window.WebSocket||window.MozWebSocket);if(!P)throw new Error("WebSocket implementation missing; on Node you can `import WebSocket from 'ws';` and pass `webSocketImpl: WebSocket` to `createClient`");let h=P,b=(()=>{let v=(()=>{let y={};return{on(w,T){return y[w]=T,()=>{delete y[w]}},emit(w){"id"in w&&y[w.id]?.(w)}}})(),S={connecting:p?.connecting?[p.connecting]:[],opened:p?.opened?[p.opened]:[],connected:p?.connected?[p.connected]:[],ping:p?.ping?[p.ping]:[],pong:p?.pong?[p.pong]:[],message:p?.message?[v.emit,p.message]:[v.emit],closed:p?.closed?[p.closed]:[],error:p?.error?[p.error]:[]};return{onMessage:v.on,on(y,w){let T=S[y];return T.push(w),()=>{let R=T.indexOf(w);R>-1&&T.splice(R,1)}},emit(y,...w){for(let T of[...S[y]])T(...w)}}})();function D(v){let S=[b.on("error",y=>{S.forEach(w=>w()),v(y)}),b.on("closed",y=>{S.forEach(w=>w()),v(y)})];return()=>S.forEach(y=>y())}let L,W=0,J,N=!1,ne=0,G=!1;async function B(){clearTimeout(J);let[v,S]=await(L??(L=new Promise((T,R)=>(async()=>{if(N){if(await u(ne),!W)return L=void 0,R({code:1e3,reason:"All Subscriptions Gone"});ne++}b.emit("connecting",N);let C=new h(typeof n=="function"?await n():n,hn),Q,se;function fe(){isFinite(l)&&l>0&&(clearTimeout(se),se=setTimeout(()=>{C.readyState===h.OPEN&&(C.send(ae({type:F.Ping})),b.emit("ping",!1,void 0))},l))}D(A=>{L=void 0,clearTimeout(Q),clearTimeout(se),R(A),A instanceof pe&&(C.close(4499,"Terminated"),C.onerror=null,C.onclose=null)}),C.onerror=A=>b.emit("error",A),C.onclose=A=>b.emit("closed",A),C.onopen=async()=>{try{b.emit("opened",C);let A=typeof t=="function"?await t():t;if(C.readyState!==h.OPEN)return;C.send(ae(A?{type:F.ConnectionInit,payload:A}:{type:F.ConnectionInit},x)),isFinite(f)&&f>0&&(Q=setTimeout(()=>{C.close(H.ConnectionAcknowledgementTimeout,"Connection acknowledgement timeout")},f)),fe()}catch(A){b.emit("error",A),C.close(H.InternalClientError,Me(A instanceof Error?A.message:String(A),"Internal client error"))}};let ie=!1;C.onmessage=({data:A})=>{try{let I=vn(A,g);if(b.emit("message",I),I.type==="ping"||I.type==="pong"){b.emit(I.type,!0,I.payload),I.type==="pong"?fe():c||(C.send(ae(I.payload?{type:F.Pong,payload:I.payload}:{type:F.Pong},x)),b.emit("pong",!1,I.payload));return}if(ie)return;if(I.type!==F.ConnectionAck)throw new Error(`First message cannot be of type ${I.type}`);clearTimeout(Q),ie=!0,b.emit("connected",C,I.payload,N),N=!1,ne=0;let Ge=new Promise((It,nt)=>D(nt));Ge.catch(()=>{}),T([C,Ge])}catch(I){C.onmessage=null,b.emit("error",I),C.close(H.BadResponse,Me(I instanceof Error?I.message:String(I),"Bad response"))}}})())));v.readyState===h.CLOSING&&await S;let y=()=>{},w=new Promise(T=>y=T);return[v,y,new Promise((T,R)=>{let C=D(R);v.readyState!==h.OPEN&&S.catch(R),w.then(()=>{if(C(),!W){let Q=()=>v.close(1e3,"Normal Closure");isFinite(a)&&a>0?(clearTimeout(J),J=setTimeout(()=>{!W&&v.readyState===h.OPEN&&Q()},a)):Q()}T()})})]}function V(v){if(Ne(v)&&(_t(v.code)||[H.InternalServerError,H.InternalClientError,H.BadRequest,H.BadResponse,H.Unauthorized,H.SubprotocolNotAcceptable,H.SubscriberAlreadyExists,H.TooManyInitialisationRequests].includes(v.code)))throw v;if(G)return!1;if(Ne(v)&&v.code===1e3)return W>0;if(!_||ne>=_||!d(v))throw v;return N=!0}i||(async()=>{for(W++;;)try{let[,,v]=await B();await v}catch(v){try{if(!V(v))return}catch(S){return s?.(S)}}})();function U(v,S){let y=m(v),w=!1,T=!1,R=()=>{W--,w=!0};return(async()=>{for(W++;;)try{let[C,Q,se]=await B();if(w)return se.catch(()=>{}),Q();let fe=b.onMessage(y,ie=>{switch(ie.type){case F.Next:{S.next(ie.payload);return}case F.Error:{T=!0,w=!0,S.error(ie.payload),R();return}case F.Complete:{w=!0,R();return}}});C.send(ae({id:y,type:F.Subscribe,payload:v},x)),R=()=>{!w&&C.readyState===h.OPEN&&C.send(ae({id:y,type:F.Complete},x)),W--,w=!0,Q()},await se.finally(fe);return}catch(C){if(!V(C))return}})().then(()=>{T||S.complete()}).catch(C=>{S.error(C)}),()=>{w||R()}}return{on:b.on,subscribe:U,iterate(v){let S=[],y={done:!1,error:null,resolve:()=>{}},w=U(v,{next(R){S.push(R),y.resolve()},error(R){y.done=!0,y.error=R,y.resolve()},complete(){y.done=!0,y.resolve()}}),T=(async function*(){for(;;){for(S.length||await new Promise(C=>y.resolve=C);S.length;)yield S.shift();if(y.error)throw y.error;if(y.done)return}})();return T.throw=async R=>(y.done||(y.done=!0,y.error=R,y.resolve()),{done:!0,value:void 0}),T.return=async()=>(w(),{done:!0,value:void 0}),T},async dispose(){if(G=!0,L){let[v]=await L;v.close(1e3,"Normal Closure")}},terminate(){L&&b.emit("closed",new pe)}}}var pe=class extends Error{name="TerminatedCloseEvent";message="4499: Terminated";code=4499;reason="Terminated";wasClean=!1};function Ne(e){return Z(e)&&"code"in e&&"reason"in e}function _t(e){return[1e3,1001,1006,1005,1012,1013,1014].includes(e)?!1:e>=1e3&&e<=1999}function gt(e){return typeof e=="function"&&"constructor"in e&&"CLOSED"in e&&"CLOSING"in e&&"CONNECTING"in e&&"OPEN"in e}var re=class extends Error{constructor(t,i){super(t);this.code=i}code;get refusesToken(){return this.code==="UNAUTHENTICATED"||this.code==="FORBIDDEN"}};function Fe(e){let[n]=e;return new re(n?.message??"unknown error",n?.extensions?.code)}var xn=window.location.origin;async function ee(e,n,t){let i=await fetch(`${xn}/graphql`,{method:"POST",headers:{"content-type":"application/json",accept:"application/graphql-response+json, application/json",authorization:`Bearer ${e}`},body:JSON.stringify({query:n.toString(),variables:t})}),s=await i.json();if(s.errors?.length)throw Fe(s.errors);if(!s.data)throw new re(`HTTP ${i.status} without data`,void 0);return s.data}var yt=e=>Math.min(2e3,100*2**e),ke=class{constructor(n,t,i){this.onRefused=i;let s=new URL("/graphql",xn);s.protocol=s.protocol==="https:"?"wss:":"ws:",this.client=He({url:s.toString(),connectionParams:{authorization:`Bearer ${n}`},lazy:!0,retryAttempts:0,keepAlive:1e4,on:{connected:()=>t("live"),closed:a=>{t("reconnecting");let l=a;l?.code===4403&&this.onRefused(new re(l.reason||"the server refused the token","FORBIDDEN"))}}})}onRefused;client;follow(n,t,i){let s=!1,a=0,l,c=()=>{},f=()=>{s||(l=setTimeout(_,yt(a)),a+=1)},_=()=>{s||(c=this.client.subscribe({query:n.toString(),variables:t()},{next:u=>{if(u.errors?.length){let d=Fe(u.errors);d.refusesToken&&(s=!0,this.onRefused(d));return}u.data&&(a=0,i(u.data))},error:u=>{if(Array.isArray(u)){let d=Fe(u);if(d.refusesToken){s=!0,this.onRefused(d);return}}f()},complete:f}))};return _(),()=>{s=!0,clearTimeout(l),c()}}once(n,t,i){return this.client.subscribe({query:n.toString(),variables:t},{next:s=>{s.data&&i(s.data)},error:()=>{},complete:()=>{}})}close(){this.client.dispose()}};function le(e,n){return n===void 0||BigInt(e)>BigInt(n)}var ht=Symbol.for("pv"),bt=0;function o(e,n,t,i,s,a){n||(n={});var l,c,f=n;if("ref"in f&&typeof e!="function")for(c in f={},n)c=="ref"?l=n[c]:f[c]=n[c];var _={type:e,props:f,key:t,ref:l,__k:null,__:null,__b:0,__e:null,__c:null,constructor:ht,__v:--bt,__i:-1,__u:0};return(s||a)&&(_.__source=s,_.__self=a),k.vnode&&k.vnode(_),_}function vt(e){let n=Math.min(...e),i=Math.max(...e)-n||1;return s=>44-(s-n)/i*40}function Ve({values:e,label:n}){if(e.length<2)return o("svg",{class:"spark",viewBox:"0 0 240 48",role:"img","aria-label":`${n}: not enough points yet`});let t=vt(e),i=240/(e.length-1),s=e.map((a,l)=>`${(l*i).toFixed(1)},${t(a).toFixed(1)}`).join(" ");return o("svg",{class:"spark",viewBox:"0 0 240 48",role:"img","aria-label":n,"data-points":e.length,children:o("polyline",{points:s,fill:"none",stroke:"currentColor","stroke-width":"2"})})}function Cn({items:e}){let n=Math.max(1,...e.map(t=>t.value));return o("div",{class:"bars",children:e.map(t=>o("div",{class:"bar","data-status":t.label,"data-count":t.value,children:[o("span",{class:"bar-label",children:t.label}),o("span",{class:"bar-track",children:o("span",{class:`bar-fill status-${t.label}`,style:{width:`${t.value/n*100}%`}})}),o("span",{class:"bar-value",children:t.value})]},t.label))})}function Le({points:e,label:n,step:t=!1}){if(e.length===0)return o("p",{class:"muted",children:"No events yet."});let a=e.map(m=>m.t),l=e.map(m=>m.v),[c,f]=[Math.min(...a),Math.max(...a)],[_,u]=[Math.min(0,...l),Math.max(...l)],d=m=>30+(m-c)/(f-c||1)*440,p=m=>104-(m-_)/(u-_||1)*92,r=[];return e.forEach((m,x)=>{let g=e[x-1];x===0?r.push(`M${d(m.t).toFixed(1)},${p(m.v).toFixed(1)}`):(t&&g&&r.push(`L${d(m.t).toFixed(1)},${p(g.v).toFixed(1)}`),r.push(`L${d(m.t).toFixed(1)},${p(m.v).toFixed(1)}`))}),o("svg",{class:"timechart",viewBox:"0 0 480 120",role:"img","aria-label":n,"data-points":e.length,children:[o("text",{x:"2",y:"12",class:"axis",children:u}),o("text",{x:"2",y:104,class:"axis",children:_}),o("path",{d:r.join(" "),fill:"none",stroke:"currentColor","stroke-width":"2"}),e.map(m=>o("circle",{cx:d(m.t),cy:p(m.v),r:"2.5",fill:"currentColor"}))]})}var q=class extends String{__apiType;value;__meta__;constructor(n,t){super(n),this.value=n,this.__meta__=t}toString(){return this.value}},Pn=new q(`
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
    `,{fragmentName:"ConsoleOrder"}),wn=new q(`
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
    `,{fragmentName:"ConsoleRebuildProgress"}),kn=new q(`
    query ConsoleWhoAmI {
  dashboard {
    position
  }
}
    `),Dn=new q(`
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
    `),Sn=new q(`
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
}`),Tn=new q(`
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
}`),Rn=new q(`
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
    `),En=new q(`
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
    `),$n=new q(`
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
    `),On=new q(`
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
}`),In=new q(`
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
}`),An=new q(`
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
    `),qn=new q(`
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
    `),Un=new q(`
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
    `);var Ct={"\n  query ConsoleWhoAmI {\n    dashboard {\n      position\n    }\n  }\n":kn,"\n  subscription ConsoleDashboard($after: Position) {\n    dashboardUpdated(after: $after) {\n      ordersByStatus {\n        status\n        count\n      }\n      revenue\n      ordersToday\n      lowStock(threshold: 5) {\n        id\n        sku\n        name\n        stock\n      }\n      position\n    }\n  }\n":Dn,"\n  query ConsoleRecentOrders($first: Int!) {\n    orders(first: $first) {\n      edges {\n        node {\n          ...ConsoleOrder\n        }\n      }\n    }\n  }\n":Sn,"\n  fragment ConsoleOrder on Order {\n    id\n    userId\n    status\n    total\n    reservation\n    payment\n    reason\n    placedAt\n    updatedAt\n    position\n    lines {\n      productId\n      sku\n      name\n      quantity\n      unitPrice\n      lineTotal\n    }\n  }\n":Pn,"\n  subscription ConsoleOrders($after: Position) {\n    orderUpdated(after: $after) {\n      ...ConsoleOrder\n    }\n  }\n":Tn,"\n  query ConsoleOrderHistory($id: UUID!) {\n    history(streamId: $id, first: 100) {\n      edges {\n        node {\n          position\n          version\n          type\n          data\n          metadata\n          recordedAt\n        }\n      }\n    }\n  }\n":Rn,"\n  subscription ConsoleProjections {\n    projectionsUpdated {\n      name\n      position\n      head\n      lag\n      lagMillis\n      status\n      error\n      failedPosition\n      updatedAt\n    }\n  }\n":En,"\n  mutation ConsoleVerify($name: String!) {\n    verifyProjection(name: $name) {\n      name\n      ok\n      position\n      rows\n      differences\n      elapsedMillis\n    }\n  }\n":$n,"\n  mutation ConsoleRebuild($name: String!) {\n    rebuildProjection(name: $name) {\n      ...ConsoleRebuildProgress\n    }\n  }\n":On,"\n  fragment ConsoleRebuildProgress on RebuildProgress {\n    name\n    phase\n    eventsDone\n    eventsTotal\n    eventsPerSecond\n    position\n    elapsedMillis\n    rows\n    error\n  }\n":wn,"\n  subscription ConsoleRebuildProgress($name: String!) {\n    rebuildProgress(name: $name) {\n      ...ConsoleRebuildProgress\n    }\n  }\n":In,"\n  query ConsoleProducts {\n    products(first: 100, includeDiscontinued: true) {\n      edges {\n        node {\n          id\n          sku\n          name\n        }\n      }\n    }\n  }\n":An,"\n  query ConsoleProductTimeline($id: UUID!) {\n    productTimeline(id: $id, last: 50) {\n      version\n      eventType\n      recordedAt\n      position\n      price\n      stock\n    }\n  }\n":qn,"\n  subscription ConsoleProduct($id: UUID!, $after: Position) {\n    productUpdated(ids: [$id], after: $after) {\n      id\n      sku\n      name\n      price\n      stock\n      version\n      position\n    }\n  }\n":Un};function j(e){return Ct[e]??{}}var jn=j(`
  query ConsoleWhoAmI {
    dashboard {
      position
    }
  }
`),Mn=j(`
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
`),Nn=j(`
  query ConsoleRecentOrders($first: Int!) {
    orders(first: $first) {
      edges {
        node {
          ...ConsoleOrder
        }
      }
    }
  }
`),Zt=j(`
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
`),Hn=j(`
  subscription ConsoleOrders($after: Position) {
    orderUpdated(after: $after) {
      ...ConsoleOrder
    }
  }
`),Fn=j(`
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
`),Vn=j(`
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
`),Ln=j(`
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
`),Wn=j(`
  mutation ConsoleRebuild($name: String!) {
    rebuildProjection(name: $name) {
      ...ConsoleRebuildProgress
    }
  }
`),eo=j(`
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
`),Gn=j(`
  subscription ConsoleRebuildProgress($name: String!) {
    rebuildProgress(name: $name) {
      ...ConsoleRebuildProgress
    }
  }
`),Bn=j(`
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
`),Qn=j(`
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
`),zn=j(`
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
`);var We="ordergraph.console.token",Jn=50,Kn=60,et=e=>new Date(e).toLocaleTimeString(),Pt=e=>`…${e.slice(-8)}`;function wt({onToken:e,error:n}){let[t,i]=$(""),[s,a]=$(!1),[l,c]=$(n);return o("form",{class:"signin",onSubmit:async _=>{_.preventDefault();let u=t.trim().replace(/^Bearer\s+/i,"");a(!0);try{await ee(u,jn,{}),e(u)}catch(d){c(d instanceof re?`${d.message} (${d.code??"no code"})`:String(d))}finally{a(!1)}},children:[o("h1",{children:"ordergraph console"}),o("p",{children:["Sign in with an admin token (",o("code",{children:"ordergraph token --sub you --role admin"}),"). It is kept in this tab only, until you sign out or close it."]}),o("label",{children:["Admin token",o("textarea",{name:"token",rows:4,value:t,onInput:_=>i(_.target.value),autocomplete:"off",spellcheck:!1})]}),o("button",{type:"submit",disabled:s||t.trim()==="",children:"Sign in"}),l&&o("p",{class:"error",role:"alert",children:l})]})}function kt({live:e}){let[n,t]=$(null),[i,s]=$([]),[a,l]=$([]),c=Pe(void 0);return X(()=>e.follow(Mn,()=>({after:c.current??null}),({dashboardUpdated:f})=>{le(f.position,c.current)&&(c.current=f.position,t(f),s(_=>[..._,Number(f.revenue)].slice(-Kn)),l(_=>[..._,f.ordersToday].slice(-Kn)))}),[e]),n?o("section",{class:"panel figures","aria-label":"figures","data-position":n.position,children:[o("h2",{children:"Figures"}),o("div",{class:"cards",children:[o("div",{class:"card",children:[o("span",{class:"card-label",children:"Revenue"}),o("span",{class:"card-value","data-testid":"revenue",children:n.revenue}),o(Ve,{values:i,label:"revenue since this page opened"})]}),o("div",{class:"card",children:[o("span",{class:"card-label",children:"Orders today (UTC)"}),o("span",{class:"card-value","data-testid":"orders-today",children:n.ordersToday}),o(Ve,{values:a,label:"orders today since this page opened"})]}),o("div",{class:"card wide",children:[o("span",{class:"card-label",children:"Orders per status"}),o(Cn,{items:n.ordersByStatus.map(f=>({label:f.status,value:f.count}))})]}),o("div",{class:"card",children:[o("span",{class:"card-label",children:"Low stock (≤ 5)"}),o("ul",{class:"low-stock","data-testid":"low-stock",children:[n.lowStock.length===0&&o("li",{class:"muted",children:"none"}),n.lowStock.map(f=>o("li",{children:[o("code",{children:f.sku})," ",f.stock]},f.id))]})]})]})]}):o("section",{class:"panel figures",children:"Loading figures…"})}function Dt({live:e,token:n,selected:t,onSelect:i}){let[s,a]=$(new Map),l=Pe(void 0),c=Pe({selected:t,onSelect:i});c.current={selected:t,onSelect:i},X(()=>{let _=()=>{},u=!1,d=p=>{le(p.position,l.current)&&(l.current=p.position),p.id===c.current.selected&&c.current.onSelect(p),a(r=>{let m=r.get(p.id);if(m&&!le(p.position,m.order.position))return r;let x=new Map(r),g=m?m.trail:[];return x.set(p.id,{order:p,trail:g[g.length-1]===p.status?g:[...g,p.status]}),x})};return(async()=>{let p=await ee(n,Nn,{first:Jn}).catch(()=>null);if(!u){for(let r of[...p?.orders.edges??[]].reverse())d(r.node);_=e.follow(Hn,()=>({after:l.current??"0"}),r=>d(r.orderUpdated))}})(),()=>{u=!0,_()}},[e,n]);let f=we(()=>[...s.values()].sort((_,u)=>_.order.placedAt<u.order.placedAt?1:_.order.placedAt>u.order.placedAt?-1:0).slice(0,Jn),[s]);return o("section",{class:"panel orders","aria-label":"orders",children:[o("h2",{children:"Orders through the saga"}),f.length===0&&o("p",{class:"muted",children:"No orders yet: they appear here as they are placed."}),o("table",{children:[o("thead",{children:o("tr",{children:[o("th",{children:"order"}),o("th",{children:"user"}),o("th",{children:"total"}),o("th",{children:"saga"}),o("th",{children:"reason"}),o("th",{children:"updated"})]})}),o("tbody",{children:f.map(({order:_,trail:u})=>o("tr",{class:_.id===t?"selected":"","data-order":_.id,"data-status":_.status,"data-position":_.position,onClick:()=>i(_),children:[o("td",{children:o("code",{children:Pt(_.id)})}),o("td",{children:_.userId}),o("td",{class:"num",children:_.total}),o("td",{class:"trail",children:u.map((d,p)=>o("span",{class:`chip status-${d}${p===u.length-1?" current":""}`,children:d},d))}),o("td",{class:"reason",children:_.reason??""}),o("td",{children:et(_.updatedAt)})]},_.id))})]})]})}function Yn(e,n){let t=e.metadata?.[n];return typeof t=="string"?t:""}function St(e){let t=e.data?.reason;return typeof t=="string"?t:""}function Tt({token:e,order:n}){let[t,i]=$(null),[s,a]=$(null);return X(()=>{let l=!1;return ee(e,Fn,{id:n.id}).then(c=>!l&&i(c.history.edges.map(f=>f.node))).catch(c=>!l&&a(String(c))),()=>{l=!0}},[e,n.id,n.position]),o("section",{class:"panel details","aria-label":"order details","data-order":n.id,children:[o("h2",{children:["Order ",o("code",{children:n.id})]}),o("dl",{class:"facts",children:[o("dt",{children:"status"}),o("dd",{"data-testid":"detail-status",children:n.status}),o("dt",{children:"user"}),o("dd",{children:n.userId}),o("dt",{children:"reservation"}),o("dd",{children:n.reservation}),o("dt",{children:"payment"}),o("dd",{children:n.payment}),o("dt",{children:"total"}),o("dd",{children:n.total}),n.reason&&o(z,{children:[o("dt",{children:"reason"}),o("dd",{children:n.reason})]})]}),o("table",{class:"lines",children:o("tbody",{children:n.lines.map(l=>o("tr",{children:[o("td",{children:[o("code",{children:l.sku})," ",l.name]}),o("td",{class:"num",children:[l.quantity," × ",l.unitPrice]}),o("td",{class:"num",children:l.lineTotal})]},l.productId))})}),o("h3",{children:"History"}),s&&o("p",{class:"error",children:s}),o("table",{class:"history",children:[o("thead",{children:o("tr",{children:[o("th",{children:"#"}),o("th",{children:"event"}),o("th",{children:"when"}),o("th",{children:"who"}),o("th",{children:"why"})]})}),o("tbody",{children:(t??[]).map(l=>o("tr",{"data-event":l.type,children:[o("td",{children:l.version}),o("td",{children:l.type}),o("td",{children:et(l.recordedAt)}),o("td",{children:Yn(l,"userId")||"the saga"}),o("td",{children:[St(l),o("span",{class:"muted",children:[" ",Yn(l,"causationId")]})]})]},l.position))})]})]})}var Xn={IDLE:0,REPLAYING:1,SWAPPING:2,DONE:3,FAILED:3};function Rt({live:e,token:n}){let[t,i]=$([]),[s,a]=$({}),[l,c]=$({});X(()=>e.follow(Vn,()=>({}),d=>i(d.projectionsUpdated)),[e]);let f=d=>a(p=>{let r=p[d.name];if(r&&(Xn[d.phase]<Xn[r.phase]||d.phase===r.phase&&d.eventsDone<r.eventsDone))return p;let m=r?.seen??[];return{...p,[d.name]:{...d,seen:m[m.length-1]===d.phase?m:[...m,d.phase]}}}),_=async d=>{a(({[d]:r,...m})=>m);let p=()=>{};await new Promise(r=>{let m=!0,x=setTimeout(r,5e3);p=e.once(Gn,{name:d},g=>{if(m){m=!1,clearTimeout(x),r();return}f(g.rebuildProgress),(g.rebuildProgress.phase==="DONE"||g.rebuildProgress.phase==="FAILED")&&p()})});try{f((await ee(n,Wn,{name:d})).rebuildProjection)}catch(r){p(),c(m=>({...m,[d]:String(r)}))}},u=async d=>{c(p=>({...p,[d]:"verifying…"}));try{let p=(await ee(n,Ln,{name:d})).verifyProjection;c(r=>({...r,[d]:p}))}catch(p){c(r=>({...r,[d]:String(p)}))}};return o("section",{class:"panel projections","aria-label":"projections",children:[o("h2",{children:"Projections"}),o("table",{children:[o("thead",{children:o("tr",{children:[o("th",{children:"view"}),o("th",{children:"position"}),o("th",{children:"head"}),o("th",{children:"lag"}),o("th",{children:"lag (s)"}),o("th",{children:"status"}),o("th",{})]})}),o("tbody",{children:t.map(d=>{let p=s[d.name],r=l[d.name],m=p&&p.eventsTotal>0?Math.round(p.eventsDone/p.eventsTotal*100):p?.phase==="DONE"?100:0;return o("tr",{"data-projection":d.name,"data-status":d.status,"data-lag":d.lag,children:[o("td",{children:[o("strong",{children:d.name}),d.error&&o("div",{class:"error",children:`failed at ${d.failedPosition??"?"}: ${d.error}`})]}),o("td",{class:"num","data-testid":"position",children:d.position}),o("td",{class:"num",children:d.head}),o("td",{class:"num",children:d.lag}),o("td",{class:"num",children:(d.lagMillis/1e3).toFixed(1)}),o("td",{children:o("span",{class:`chip state-${d.status}`,children:d.status})}),o("td",{class:"actions",children:[o("button",{type:"button",onClick:()=>u(d.name),children:"Verify"}),o("button",{type:"button",onClick:()=>_(d.name),children:"Rebuild"}),r!==void 0&&o("div",{class:"verify","data-testid":"verify","data-ok":typeof r=="string"?void 0:String(r.ok),children:typeof r=="string"?r:r.ok?`equal to a replay: ${r.rows} rows at ${r.position} (${r.elapsedMillis} ms)`:`${r.differences} rows differ from a replay`}),p&&p.phase&&o("div",{class:"rebuild","data-testid":"rebuild","data-phase":p.phase,"data-seen":p.seen.join(" "),children:[o("progress",{max:100,value:m}),o("span",{children:[p.phase," ",p.eventsDone,"/",p.eventsTotal," events",p.phase==="DONE"?`, ${p.rows} rows`:"",p.error?`: ${p.error}`:""]})]})]})]},d.name)})})]})]})}function Et({live:e,token:n}){let[t,i]=$([]),[s,a]=$(""),[l,c]=$([]),f=()=>ee(n,Bn,{}).then(d=>i(d.products.edges.map(p=>p.node))).catch(()=>{});X(()=>{f()},[n]),X(()=>{if(!s){c([]);return}let d,p=!1,r=e.follow(zn,()=>({id:s,after:d??null}),({productUpdated:m})=>{le(m.position,d)&&(d=m.position,ee(n,Qn,{id:s}).then(x=>!p&&c(x.productTimeline)).catch(()=>{}))});return()=>{p=!0,r()}},[e,n,s]);let _=l.map(d=>({t:Date.parse(d.recordedAt),v:d.stock})),u=l.map(d=>({t:Date.parse(d.recordedAt),v:Number(d.price)}));return o("section",{class:"panel product","aria-label":"product over time",children:[o("h2",{children:"A product over time"}),o("select",{name:"product",value:s,onFocus:f,onChange:d=>a(d.target.value),children:[o("option",{value:"",children:"choose a product…"}),t.map(d=>o("option",{value:d.id,children:[d.sku," · ",d.name]},d.id))]}),s&&o("div",{class:"series","data-product":s,"data-versions":l.map(d=>d.version).join(" "),children:[o("h3",{children:"Stock"}),o(Le,{points:_,label:"stock after each event"}),o("h3",{children:"Price"}),o(Le,{points:u,label:"price after each event",step:!0}),o("p",{class:"muted",children:["The last ",l.length," events of the product, replayed from the log (",o("code",{children:"productTimeline"}),")."]})]})]})}function $t({token:e,onSignOut:n}){let[t,i]=$("connecting"),[s,a]=$(null),l=we(()=>new ke(e,i,f=>n(f.message)),[e]);X(()=>()=>l.close(),[l]);let c=f=>a(_=>_?.id===f.id&&!le(f.position,_.position)?_:f);return o(z,{children:[o("header",{children:[o("h1",{children:"ordergraph console"}),o("span",{class:`connection ${t}`,"data-testid":"connection","data-state":t,children:t==="live"?"live":t==="connecting"?"connecting…":"reconnecting…"}),o("button",{type:"button",class:"signout",onClick:()=>n(null),children:"Sign out"})]}),o("main",{children:[o(kt,{live:l}),o("div",{class:"columns",children:[o(Dt,{live:l,token:e,selected:s?.id??null,onSelect:c}),s?o(Tt,{token:e,order:s}):o("section",{class:"panel details muted",children:"Click an order for its details and history."})]}),o(Rt,{live:l,token:e}),o(Et,{live:l,token:e})]})]})}function Ot(){let[e,n]=$(()=>sessionStorage.getItem(We)),[t,i]=$(null);return e?o($t,{token:e,onSignOut:s=>{sessionStorage.removeItem(We),i(s),n(null)}}):o(wt,{error:t,onToken:s=>{sessionStorage.setItem(We,s),i(null),n(s)}})}var Zn=document.getElementById("console");Zn&&rn(o(Ot,{}),Zn);
